fn main() {
    ptnetd::x();
}
