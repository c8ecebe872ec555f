//! Properties of the built eBPF object that no packet test sees.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

/// The compiler's memory builtins as the BPF backend leaves them: called, not
/// expanded, and each a byte-at-a-time loop. Some crept into the established
/// path once (an 80-byte `memmove` per packet, a 64-byte `memset` per FIB
/// lookup) and cost more than the rest of the path; `lb-ebpf/src/mem.rs`
/// says how the code avoids them.
const BYTE_LOOPS: [&str; 5] = ["memset", "memmove", "memcpy", "memcmp", "bcmp"];

/// Every relocation in `elf` against a symbol named in `names`, described.
fn references_to(elf: &[u8], names: &[&str]) -> Vec<String> {
    let file = object::File::parse(elf).expect("an ELF object");
    let mut found = Vec::new();
    for section in file.sections() {
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(index) = reloc.target() else { continue };
            let symbol = file.symbol_by_index(index).expect("relocation symbol");
            let name = symbol.name().unwrap_or_default();
            if names.contains(&name) {
                found.push(format!("{} +{offset:#x} -> {name}", section.name().unwrap_or("?")));
            }
        }
    }
    found
}

#[test]
fn the_data_path_calls_no_byte_loop_builtins() {
    let calls = references_to(lb_user::EBPF_OBJECT, &BYTE_LOOPS);
    assert!(calls.is_empty(), "memory builtins called from the eBPF programs:\n{}", calls.join("\n"));
}

/// The check above reads relocations the way it must: the same walk finds
/// the program's references to its flow table.
#[test]
fn the_relocation_walk_finds_references() {
    assert!(!references_to(lb_user::EBPF_OBJECT, &["FLOWS_V4"]).is_empty());
}
