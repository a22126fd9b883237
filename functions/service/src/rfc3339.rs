//! Serialises `SystemTime` as an RFC 3339 timestamp (`2026-11-21T12:00:00Z`).

use std::time::SystemTime;

use serde::Serializer;

pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let formatted = time::OffsetDateTime::from(*t)
        .replace_millisecond(0)
        .map_err(serde::ser::Error::custom)?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&formatted)
}
