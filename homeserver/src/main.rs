//! The `myelin` homeserver binary.

fn main() {
    eprintln!(
        "myelin {}: the client-server API is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
