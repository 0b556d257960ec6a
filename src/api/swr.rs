//! SWR (SoftWare Repository for Container): what the SWR calls share. Listings under
//! `/v2/manage/...` answer with a bare JSON array and, when `limit` and `offset` are sent, a
//! `Content-Range` header. The documentation gives it as `offset-count/total` while other
//! services write `first-last/total`, so only the first number and the total are relied on: a
//! listing is paged by the number of items each page actually held, until the total is reached
//! or a page comes back short.

use reqwest::header::HeaderMap;

/// A parsed `Content-Range`: the first record's offset and the total the listing had when the
/// page was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub offset: u64,
    pub total: u64,
}

impl ContentRange {
    /// Parses `offset-n/total`, with or without a unit (`items 0-9/35`) and spaces. `None`
    /// when the header is missing or holds something else.
    pub fn parse(value: &str) -> Option<ContentRange> {
        let value = value.trim();
        let value = value.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let (range, total) = value.split_once('/')?;
        let (offset, _) = range.split_once('-')?;
        Some(ContentRange {
            offset: offset.trim().parse().ok()?,
            total: total.trim().parse().ok()?,
        })
    }

    /// The header of a response, if it is present and well formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<ContentRange> {
        ContentRange::parse(headers.get("content-range")?.to_str().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::ContentRange;

    #[test]
    fn content_range_takes_the_offset_and_the_total() {
        let want = |offset, total| Some(ContentRange { offset, total });
        assert_eq!(ContentRange::parse("0-10/35"), want(0, 35));
        assert_eq!(ContentRange::parse("20-9/29"), want(20, 29));
        assert_eq!(ContentRange::parse("items 10-19/35"), want(10, 35));
        assert_eq!(ContentRange::parse(" 0 - 0 / 0 "), want(0, 0));
        assert_eq!(ContentRange::parse("*/35"), None);
        assert_eq!(ContentRange::parse("0-10"), None);
        assert_eq!(ContentRange::parse("a-10/35"), None);
        assert_eq!(ContentRange::parse(""), None);
    }
}
