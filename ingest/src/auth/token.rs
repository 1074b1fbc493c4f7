//! Where a request carries its token: `Authorization: Bearer …` (what `webhook_auth_header`
//! sends), else the `access_token` query parameter. Pure.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

/// The request's token, if any. An `Authorization` header with another scheme yields none (the
/// query string is then not consulted, as the peer does).
pub fn extract(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .filter(|t| !t.is_empty());
    }
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "access_token").then(|| percent_decode(value)).flatten().filter(|t| !t.is_empty())
    })
}

fn percent_decode(text: &str) -> Option<String> {
    crate::route::percent_decode_with(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_then_query_parameter() {
        let mut headers = HeaderMap::new();
        assert_eq!(extract(&headers, Some("a=1&access_token=t%2E1")), Some("t.1".into()));
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(extract(&headers, Some("access_token=zzz")), Some("abc".into()));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(extract(&headers, Some("access_token=zzz")), None);
        assert_eq!(extract(&HeaderMap::new(), None), None);
    }
}
