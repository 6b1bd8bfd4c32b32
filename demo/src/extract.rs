//! Text extraction: the work the worker does on each upload.
//!
//! Plain text only: UTF-8 (a byte-order mark is dropped) and UTF-16 with a byte-order mark.
//! Anything else (PDF, Office files, images, other legacy encodings) is refused with a reason,
//! which the worker stores as the document's `error` with status `failed`.

/// Why a file could not be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Returns the text of `content`, or why it is not plain text.
pub fn extract_text(content: &[u8]) -> Result<String, Unsupported> {
    const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];
    if let Some(rest) = content.strip_prefix(UTF8_BOM) {
        return decode_utf8(rest);
    }
    if let Some(rest) = content.strip_prefix(&[0xFF, 0xFE]) {
        return decode_utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = content.strip_prefix(&[0xFE, 0xFF]) {
        return decode_utf16(rest, u16::from_be_bytes);
    }
    decode_utf8(content)
}

fn decode_utf8(bytes: &[u8]) -> Result<String, Unsupported> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        Unsupported(format!(
            "not plain text: invalid UTF-8 at byte {} (only UTF-8 and UTF-16 text files are supported)",
            error.valid_up_to()
        ))
    })?;
    // NUL never occurs in text files, and is the surest sign of a binary format.
    if text.contains('\0') {
        return Err(Unsupported(
            "not plain text: the file contains NUL bytes (binary content)".to_owned(),
        ));
    }
    Ok(text.to_owned())
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, Unsupported> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Unsupported(
            "not plain text: UTF-16 content with an odd number of bytes".to_owned(),
        ));
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| unit([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| Unsupported("not plain text: invalid UTF-16".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::extract_text;

    #[test]
    fn reads_utf8_with_and_without_bom() {
        assert_eq!(
            extract_text("héllo\nworld".as_bytes()).unwrap(),
            "héllo\nworld"
        );
        assert_eq!(extract_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
        assert_eq!(extract_text(b"").unwrap(), "");
    }

    #[test]
    fn reads_utf16_with_a_bom() {
        let little: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(extract_text(&little).unwrap(), "hé");
        let big: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(extract_text(&big).unwrap(), "hé");
    }

    #[test]
    fn refuses_binary_with_a_reason() {
        let pdf_like = b"%PDF-1.7\n\xE2\xE3\xCF\xD3\n";
        assert!(extract_text(pdf_like).unwrap_err().0.contains("UTF-8"));
        assert!(extract_text(b"PK\x03\x04\0\0")
            .unwrap_err()
            .0
            .contains("NUL"));
    }
}
