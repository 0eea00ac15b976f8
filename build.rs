//! Compiles the kernel witness's BPF program (src/kernel/bpf/witness.bpf.c) with clang
//! into OUT_DIR, where src/kernel/witness.rs embeds it. Only with the `kernel-witness`
//! feature (the default); without it nothing here runs and no clang is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "kernel-witness")]
    witness::build();
}

#[cfg(feature = "kernel-witness")]
mod witness {
    use std::path::PathBuf;

    const SOURCE: &str = "src/kernel/bpf/witness.bpf.c";

    pub fn build() {
        println!("cargo:rerun-if-changed=src/kernel/bpf");
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let obj = out.join("witness.bpf.o");
        let result = libbpf_cargo::SkeletonBuilder::new()
            .source(SOURCE)
            .obj(&obj)
            // The hand-written CO-RE header beside the source (no generated vmlinux.h).
            .clang_args(["-I", "src/kernel/bpf", "-Wall", "-Werror"])
            .build();
        if let Err(e) = result {
            // The one message a user building without clang must see, with the way out.
            panic!(
                "cannot compile the kernel witness ({SOURCE}): {e:#}\n\
                 Install clang (Debian: apt-get install clang libelf-dev zlib1g-dev \
                 pkg-config), or build without it: cargo build --no-default-features"
            );
        }
    }
}
