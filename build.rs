//! Generates the KServe v2 / Triton gRPC client (src/remote) from the
//! protocol files in proto/triton, with the vendored protoc: no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/triton");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/triton/grpc_service.proto"], &["proto/triton"])?;
    Ok(())
}
