//! A wasi:cli command, not an HTTP handler: deploying it must fail with a clear error.
fn main() {
    println!("I am a command");
}
