//! The protobuf contract (`proto/churnwatch/v1/*.proto`), generated at build
//! time by prost, with the proto3 canonical JSON mapping from pbjson.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/churnwatch.v1.rs"));
include!(concat!(env!("OUT_DIR"), "/churnwatch.v1.serde.rs"));
