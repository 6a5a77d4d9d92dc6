// libFuzzer target for the CarbonStore file decoder. Built by scripts/fuzz.sh, which compiles the
// CarbonModel and CarbonFormat sources into the fuzzer with -sanitize=fuzzer,address.
//
// Properties checked on every input (any failure aborts, which libFuzzer reports as a crash):
// - `RecordCodec.readHeader` and `RecordCodec().decode` either return or throw a `FormatError`;
//   they never trap, overflow, read out of bounds or allocate without bound.
// - If `decode` succeeds, `readHeader` succeeds too and agrees with the record's header fields.
// - If `decode` succeeds, encoding the record and decoding it again gives an equal record (or,
//   for records holding NaN answers, which are never equal to themselves, equal bytes when
//   encoded again): no silent corruption. Both compressed and uncompressed re-encodings.

import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#endif

private let codecs = [
    RecordCodec(),
    RecordCodec(options: .init(compression: .none)),
    RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 0)),
]

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
    let header = try? RecordCodec.readHeader(bytes)
    let record: UserRecord
    do {
        record = try RecordCodec().decode(bytes)
    } catch {
        _ = error.description  // every error must describe itself without trapping
        return
    }
    guard let header else { fail("decode succeeded but readHeader failed") }
    guard
        header.userID.utf8.elementsEqual(record.userID.utf8), header.revision == record.revision,
        header.createdAt == record.createdAt, header.updatedAt == record.updatedAt
    else { fail("readHeader disagrees with decode") }
    for codec in codecs {
        let encoded = codec.encode(record)
        let again: UserRecord
        do { again = try codec.decode(encoded) } catch {
            fail("re-encoded record does not decode: \(error)")
        }
        if again != record {
            guard hasNaNAnswer(record), codec.encode(again) == encoded else {
                fail("re-encoded record decodes to a different record")
            }
        }
        guard again.userID.utf8.elementsEqual(record.userID.utf8) else {
            fail("user id changed bytes on a round trip")
        }
    }
}
