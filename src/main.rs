#![forbid(unsafe_code)]

fn main() {
    std::process::exit(jaros::cli::main());
}
