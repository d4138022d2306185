//! Compiles `wordcount.js` to QuickJS bytecode (`$OUT_DIR/wordcount.js.qjsbc`),
//! so calls do not parse it and a syntax error fails this build.
fn main() {
    weir_js::build::compile_file("wordcount.js");
}
