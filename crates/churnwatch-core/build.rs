//! Generates the protobuf types from the workspace's `proto/` with prost, compiling the
//! `.proto` files with protox (pure Rust, so no `protoc` is needed), and the
//! proto3 canonical JSON mapping with pbjson.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The schemas stay at the workspace root (`proto/`), where the docs and
    // the Kafka Streams peer (benches/peer) read them too.
    let files = [
        "../../proto/churnwatch/v1/events.proto",
        "../../proto/churnwatch/v1/state.proto",
        "../../proto/churnwatch/v1/outreach.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["../../proto"])?;
    let descriptor_path = out.join("churnwatch_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&files, &["../../proto"])?;

    let set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .build(&[".churnwatch.v1"])?;
    Ok(())
}
