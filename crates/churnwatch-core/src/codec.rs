//! Event encodings: protobuf (binary) and the proto3 canonical JSON mapping
//! (pbjson), per message, and the two file framings `replay` reads: JSON
//! Lines and length-delimited protobuf (varint length prefix, as protobuf's
//! `writeDelimitedTo` writes).

use std::io::{self, BufRead};

use prost::Message;

use crate::pb::InteractionEvent;

/// Largest event accepted in any framing; bigger is a poison message.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Deepest JSON nesting accepted before parsing (an event is 3 deep).
const MAX_JSON_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Protobuf binary (files: length-delimited).
    #[default]
    Protobuf,
    /// proto3 JSON (files: one event per line).
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not a valid protobuf InteractionEvent: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not valid UTF-8 JSON: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("JSON nesting deeper than {MAX_JSON_DEPTH}")]
    TooDeep,
    #[error("not a valid proto3 JSON InteractionEvent: {0}")]
    Json(#[from] serde_json::Error),
}

impl DecodeError {
    /// Stable snake_case code (metrics label, dead-letter header).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Protobuf(_) => "undecodable_protobuf",
            DecodeError::Utf8(_) => "invalid_utf8",
            DecodeError::TooDeep => "json_too_deep",
            DecodeError::Json(_) => "undecodable_json",
        }
    }

    pub const REASONS: [&'static str; 6] = [
        "empty",
        "too_large",
        "undecodable_protobuf",
        "invalid_utf8",
        "json_too_deep",
        "undecodable_json",
    ];
}

/// The reason `replay` gives a length-delimited record cut short (or a
/// length prefix over the limit): the rest of the file is skipped.
pub const TRUNCATED_FILE: &str = "truncated_file";

/// Decodes one message in the given format.
pub fn decode(bytes: &[u8], format: Format) -> Result<InteractionEvent, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    match format {
        Format::Protobuf => Ok(InteractionEvent::decode(bytes)?),
        Format::Json => {
            let text = std::str::from_utf8(bytes)?;
            if json_depth_exceeds(text, MAX_JSON_DEPTH) {
                return Err(DecodeError::TooDeep);
            }
            Ok(serde_json::from_str(text)?)
        }
    }
}

/// Encodes one message in the given format.
pub fn encode(ev: &InteractionEvent, format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => ev.encode_to_vec(),
        Format::Json => serde_json::to_vec(ev).unwrap_or_default(),
    }
}

/// Whether brackets nest deeper than `max` (cheap pre-check; serde_json
/// has its own recursion limit, this keeps the error a named reason).
fn json_depth_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// One framed record read from a file: its 1-based position and bytes.
pub struct Record {
    /// Line number (JSON Lines) or record number (length-delimited).
    pub position: u64,
    pub bytes: Vec<u8>,
    /// A line longer than [`MAX_EVENT_BYTES`]: its length in bytes (its
    /// bytes were not kept; `bytes` is empty).
    pub oversize: Option<u64>,
}

/// Reads records from a file in the framing of `format`. A framing error
/// (truncated length-delimited record) ends the file with an error.
pub struct Records<R> {
    reader: R,
    format: Format,
    position: u64,
    done: bool,
}

impl<R: BufRead> Records<R> {
    pub fn new(reader: R, format: Format) -> Self {
        Records {
            reader,
            format,
            position: 0,
            done: false,
        }
    }

    /// The next non-blank line, read at most [`MAX_EVENT_BYTES`] + 1 bytes
    /// at a time into memory: the rest of a longer line is read and
    /// dropped without being kept, and the line comes back as
    /// [`Record::oversize`] with its length.
    fn next_line(&mut self) -> io::Result<Option<Record>> {
        loop {
            let mut buf = Vec::new();
            let mut len: u64 = 0;
            let mut ended = false;
            let mut newline = false;
            loop {
                let chunk = match self.reader.fill_buf() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    break;
                }
                let (take, found) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                // The limit plus a line end ("\r\n"), plus one to know it is over.
                let room = (MAX_EVENT_BYTES + 3).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..take.min(room)]);
                len += take as u64;
                ended = true;
                self.reader.consume(take);
                if found {
                    newline = true;
                    break;
                }
            }
            if !ended {
                return Ok(None);
            }
            self.position += 1;
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            if len > MAX_EVENT_BYTES as u64 + 2 || buf.len() > MAX_EVENT_BYTES {
                return Ok(Some(Record {
                    position: self.position,
                    bytes: Vec::new(),
                    oversize: Some(len - u64::from(newline)),
                }));
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines are not events
            }
            return Ok(Some(Record {
                position: self.position,
                bytes: buf,
                oversize: None,
            }));
        }
    }

    fn next_delimited(&mut self) -> io::Result<Option<Record>> {
        let mut len: u64 = 0;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            match self.reader.read(&mut byte)? {
                0 if i == 0 => return Ok(None),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated length prefix",
                    ))
                }
                _ => {}
            }
            len |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        self.position += 1;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_EVENT_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record of {len} bytes exceeds the limit"),
            ));
        }
        let mut bytes = vec![0u8; len];
        self.reader.read_exact(&mut bytes)?;
        Ok(Some(Record {
            position: self.position,
            bytes,
            oversize: None,
        }))
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = io::Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = match self.format {
            Format::Json => self.next_line(),
            Format::Protobuf => self.next_delimited(),
        };
        match r {
            Ok(Some(rec)) => Some(Ok(rec)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Appends one event in the file framing of `format`.
pub fn write_framed(out: &mut Vec<u8>, ev: &InteractionEvent, format: Format) {
    match format {
        Format::Json => {
            out.extend_from_slice(&encode(ev, Format::Json));
            out.push(b'\n');
        }
        Format::Protobuf => {
            let _ = ev.encode_length_delimited(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[test]
    fn both_formats_round_trip_and_frame() {
        let evs = [
            events::purchase("e1", "c1", 1_700_000_000, 12.5),
            events::nps("e2", "c1", 1_700_000_100, 3),
        ];
        for format in [Format::Protobuf, Format::Json] {
            let mut file = Vec::new();
            for e in &evs {
                write_framed(&mut file, e, format);
            }
            let back: Vec<InteractionEvent> = Records::new(&file[..], format)
                .map(|r| {
                    decode(&r.map(|r| r.bytes).unwrap_or_default(), format).unwrap_or_default()
                })
                .collect();
            assert_eq!(back, evs, "{format:?}");
        }
    }

    #[test]
    fn json_is_the_canonical_proto3_mapping() {
        let e = events::nps("e2", "c1", 1_700_000_100, 3);
        let text = String::from_utf8(encode(&e, Format::Json)).unwrap_or_default();
        // pbjson writes RFC 3339 with an explicit offset; both forms parse.
        assert!(
            text.contains("\"occurredAt\":\"2023-11-14T22:15:00+00:00\""),
            "{text}"
        );
        assert!(text.contains("\"eventId\":\"e2\""), "{text}");
        assert!(text.contains("\"survey\":{\"nps\":3}"), "{text}");
        let snake = r#"{"event_id":"x","customer_id":"c","occurred_at":"2024-01-01T00:00:00Z","channel":"CHANNEL_EMAIL","session":{}}"#;
        let parsed = decode(snake.as_bytes(), Format::Json).unwrap_or_default();
        assert_eq!(parsed.customer_id, "c");
        assert_eq!(parsed.channel, crate::pb::Channel::Email as i32);
    }

    #[test]
    fn bad_bytes_are_named_errors() {
        assert_eq!(
            decode(b"", Format::Protobuf).err().map(|e| e.reason()),
            Some("empty")
        );
        assert_eq!(
            decode(&[0xff, 0xff, 0xff], Format::Protobuf)
                .err()
                .map(|e| e.reason()),
            Some("undecodable_protobuf")
        );
        assert_eq!(
            decode(&[0xc3, 0x28], Format::Json)
                .err()
                .map(|e| e.reason()),
            Some("invalid_utf8")
        );
        let deep = "[".repeat(100);
        assert_eq!(
            decode(deep.as_bytes(), Format::Json)
                .err()
                .map(|e| e.reason()),
            Some("json_too_deep")
        );
        assert_eq!(
            decode(b"{\"channel\": 7.5}", Format::Json)
                .err()
                .map(|e| e.reason()),
            Some("undecodable_json")
        );
        let huge = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            decode(&huge, Format::Json).err().map(|e| e.reason()),
            Some("too_large")
        );
    }

    #[test]
    fn truncated_delimited_file_ends_with_an_error() {
        let mut file = Vec::new();
        write_framed(
            &mut file,
            &events::purchase("e1", "c1", 1_700_000_000, 1.0),
            Format::Protobuf,
        );
        file.truncate(file.len() - 3);
        let mut r = Records::new(&file[..], Format::Protobuf);
        assert!(matches!(r.next(), Some(Err(_))));
        assert!(r.next().is_none());
    }
}
