// libFuzzer target for the CarbonStore file decoder. Built by scripts/fuzz.sh, which compiles the
// CarbonModel and CarbonFormat sources into the fuzzer with -sanitize=fuzzer,address.
//
// Properties checked on every input (any failure aborts, which libFuzzer reports as a crash):
// `decoderPropertyViolation` in Sources/CarbonStoreTestSupport/FuzzChecks.swift, shared with the
// regression tests: the decoder returns or throws a `FormatError` and never traps, overflows,
// reads out of bounds or allocates without bound; a decoded file (version 1 or 2, frames and torn
// tails included) agrees with `readHeader` and `scanLayout`, re-encodes to an equal record, and
// takes an appended change frame.

import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#endif

private func fail(_ message: String) -> Never {
    let line = Array("DecoderFuzzer: property violated: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func decoderFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    check(input)
    let repaired = repairingChecksums(input)
    if repaired != input { check(repaired) }
    return 0
}

func check(_ bytes: [UInt8]) {
    if let violation = decoderPropertyViolation(bytes) { fail(violation) }
}
