//! Notifications: MDNs (processed, dispatched, failed) and DSNs (RFC 3464) — building,
//! reading, and tracking them per outbound message and recipient (SPEC E).

pub mod dsn;
pub mod mdn;
pub mod tracking;

/// The parts of a `multipart/report` of `report_type`: `Err(None)` when the message is some
/// other kind, `Err(Some(why))` when it is a report but malformed.
pub(crate) fn report_parts<'a>(
    message: &'a [u8],
    report_type: &str,
) -> Result<Vec<&'a [u8]>, Option<String>> {
    use crate::smime::mime::{content_type, multipart_parts, split};
    let top = split(message);
    let ct = content_type(top.header);
    if !ct.is("multipart/report")
        || !ct
            .param("report-type")
            .is_some_and(|t| t.eq_ignore_ascii_case(report_type))
    {
        return Err(None);
    }
    let boundary = ct
        .param("boundary")
        .ok_or_else(|| Some("multipart/report without a boundary".to_string()))?;
    multipart_parts(top.body, boundary).map_err(|e| Some(e.to_string()))
}

/// The Content-Type of `message`, for "not a report" errors.
pub(crate) fn mime_type(message: &[u8]) -> String {
    use crate::smime::mime::{content_type, split};
    content_type(split(message).header).mime_type
}
