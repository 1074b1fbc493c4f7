#![no_main]
//! Recovery over arbitrary directory contents (segments, summaries, the bounds file, temporary
//! and set-aside files, in any mix): opening never panics, reads of what it opened never panic,
//! and a journal that opened once opens again (see `wharf_queue::journal::image`).

use libfuzzer_sys::fuzz_target;
use wharf_queue::journal::image;

fuzz_target!(|data: &[u8]| {
    // A memory file system when there is one: the journal syncs at every open.
    let scratch = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let dir = tempfile::Builder::new().prefix("wharf-fuzz-journal").tempdir_in(scratch).expect("a scratch directory");
    image::unpack(data, dir.path()).expect("writing the image");
    let _ = image::open_and_read(dir.path());
});
