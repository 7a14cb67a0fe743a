//! Channels as compact indices for per-customer state.

use crate::pb::Channel;

/// Number of real channels (everything but `CHANNEL_UNSPECIFIED`).
pub const COUNT: usize = 8;

/// All real channels, in enum order.
pub const ALL: [Channel; COUNT] = [
    Channel::Web,
    Channel::Email,
    Channel::Phone,
    Channel::Chat,
    Channel::Social,
    Channel::App,
    Channel::Store,
    Channel::Sms,
];

/// Index 0..COUNT of a real channel, `None` for unspecified.
pub fn index(c: Channel) -> Option<usize> {
    match c {
        Channel::Unspecified => None,
        other => Some(other as usize - 1),
    }
}

/// The channel stored at an index (inverse of [`index`]).
pub fn at(i: usize) -> Channel {
    ALL.get(i).copied().unwrap_or(Channel::Unspecified)
}

/// The channel with a given protobuf number; unknown numbers are unspecified.
pub fn from_number(n: u32) -> Channel {
    i32::try_from(n)
        .ok()
        .and_then(|n| Channel::try_from(n).ok())
        .unwrap_or(Channel::Unspecified)
}

/// Lower-case short name (`email`), as used in config, metrics and reasons.
pub fn name(c: Channel) -> &'static str {
    match c {
        Channel::Unspecified => "unspecified",
        Channel::Web => "web",
        Channel::Email => "email",
        Channel::Phone => "phone",
        Channel::Chat => "chat",
        Channel::Social => "social",
        Channel::App => "app",
        Channel::Store => "store",
        Channel::Sms => "sms",
    }
}

/// Parses a short name (`email`) or the enum name (`CHANNEL_EMAIL`).
pub fn parse(text: &str) -> Option<Channel> {
    let lower = text.trim().to_ascii_lowercase();
    let short = lower.strip_prefix("channel_").unwrap_or(&lower);
    ALL.into_iter().find(|c| name(*c) == short)
}

/// serde helpers for a channel written as its short name.
pub mod serde_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use crate::pb::Channel;

    pub fn serialize<S: Serializer>(c: &Channel, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::name(*c))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Channel, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).ok_or_else(|| de::Error::custom(format!("unknown channel `{text}`")))
    }
}

/// serde helpers for a list of channels written as short names.
pub mod serde_names {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use crate::pb::Channel;

    pub fn serialize<S: Serializer>(cs: &[Channel], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(cs.iter().map(|c| super::name(*c)))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Channel>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                super::parse(t).ok_or_else(|| de::Error::custom(format!("unknown channel `{t}`")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip_and_names_parse() {
        for (i, c) in ALL.iter().enumerate() {
            assert_eq!(index(*c), Some(i));
            assert_eq!(at(i), *c);
            assert_eq!(parse(name(*c)), Some(*c));
            assert_eq!(parse(c.as_str_name()), Some(*c));
        }
        assert_eq!(index(Channel::Unspecified), None);
        assert_eq!(from_number(99), Channel::Unspecified);
        assert_eq!(parse("carrier pigeon"), None);
    }
}
