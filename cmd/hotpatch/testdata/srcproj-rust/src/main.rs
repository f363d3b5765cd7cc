use std::io::Write;

#[inline(never)]
fn compute(x: u64) -> u64 {
    x * 2
}

fn main() {
    loop {
        println!("{}", compute(std::hint::black_box(21)));
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
