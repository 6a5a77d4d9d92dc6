import CarbonFormat
import CarbonModel

// Shared by the libFuzzer target (Fuzz/DecoderFuzzer.swift, which scripts/fuzz.sh compiles with
// this file) and the regression tests that replay its inputs.

/// Whether a record holds a NaN answer (NaN != NaN, so such records compare by their bytes).
public func hasNaNAnswer(_ record: UserRecord) -> Bool {
    record.responses.contains {
        if case .number(let d) = $0.answer { return d.isNaN }
        return false
    }
}

/// The input with every CRC that its lengths let us find recomputed, so that mutated bytes get past
/// the checksums into the payload parsers (most random mutations fail a CRC check first).
public func repairingChecksums(_ input: [UInt8]) -> [UInt8] {
    var bytes = input
    func u32(_ at: Int) -> Int {
        (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) }
    }
    func put(_ value: UInt32, at: Int) {
        for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
    guard bytes.count >= 48 else { return bytes }
    let idLength = u32(40)
    guard idLength <= bytes.count - 48 else { return bytes }
    put(CRC32C.checksum(bytes[0..<(44 + idLength)]), at: 44 + idLength)
    var position = 48 + idLength
    for _ in 0..<u32(36) {
        guard position + 8 <= bytes.count else { break }
        let length = u32(position + 4)
        guard length <= bytes.count - position - 12 else { break }
        put(CRC32C.checksum(bytes[position..<(position + 8 + length)]), at: position + 8 + length)
        position += 12 + length
    }
    return bytes
}
