//! Layer and tree records read back from disk: any bytes must parse or fail cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ociboot_store::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data, record::LAYER_MAGIC, "fuzz");
    if let Ok(t) = record::decode_tree(data, "fuzz") {
        // What parses must encode and parse back to the same tree.
        let again =
            record::decode_tree(&record::encode_tree(&t, "again").expect("encode"), "again")
                .expect("re-encoded tree");
        assert_eq!(t, again);
    }
});
