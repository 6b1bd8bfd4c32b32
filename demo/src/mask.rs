//! Masks the password of a connection URI before it reaches a log line or a response.
//!
//! `amqp://guest:guest@rabbitmq:5672/%2f` becomes `amqp://guest:***@rabbitmq:5672/%2f`; a URI
//! without a password is returned unchanged.

/// Returns `uri` with the password of its user-info part replaced by `***`.
pub fn mask_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &uri[authority_start..];
    // The authority ends at the first path, query or fragment delimiter.
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // User info may itself contain '@' when badly escaped: the host follows the last one.
    let Some(at) = authority.rfind('@') else {
        return uri.to_owned();
    };
    let user_info = &authority[..at];
    let Some(colon) = user_info.find(':') else {
        return uri.to_owned();
    };
    format!(
        "{}{}:***{}",
        &uri[..authority_start],
        &user_info[..colon],
        &uri[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::mask_uri;

    #[test]
    fn masks_passwords_and_keeps_everything_else() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "mongodb://root:s3cr%40t@mongo:27017/demo?authSource=admin",
                "mongodb://root:***@mongo:27017/demo?authSource=admin",
            ),
            ("mongodb://a:b@h1,h2/?x=1", "mongodb://a:***@h1,h2/?x=1"),
            ("mongodb://user@mongo:27017", "mongodb://user@mongo:27017"),
            ("mongodb://mongo:27017", "mongodb://mongo:27017"),
            ("amqp://u:p@ss@host/vh", "amqp://u:***@host/vh"),
            ("not a uri", "not a uri"),
            ("http://host/path:with@at", "http://host/path:with@at"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_uri(input), expected, "masking {input}");
        }
    }
}
