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

/// Which version-2 snapshot id re-encodings use, so that they can be compared byte for byte.
public let fuzzFileID = WriteID(high: 0x0F0E_0D0C_0B0A_0908, low: 0x0706_0504_0302_0100)

/// The properties checked on every input, by the fuzzer and by the regression tests: nil when they
/// hold, else what was violated.
///
/// - `readHeader`, `decodeFile`, `scanLayout` and `RecordCodec.inspect` return or throw a
///   `FormatError`; they never trap (the fuzzer's sanitizers catch reads out of bounds).
/// - If `decodeFile` succeeds: `readHeader` and `scanLayout` succeed and agree with it (user id;
///   revision and times when there are no frames; the layout's lengths, frames, ids and sizes);
///   the valid bytes alone decode to the same record without an ignored tail; the record
///   re-encoded (three codecs) decodes to an equal record (or, for NaN answers, which are never
///   equal to themselves, to equal bytes); and a frame appended by `encodeChange` is accepted by
///   `startsWithFrame` and decodes to the changed record.
public func decoderPropertyViolation(_ bytes: [UInt8]) -> String? {
    let header = try? RecordCodec.readHeader(bytes)
    _ = try? RecordCodec.inspect(bytes)
    let codec = RecordCodec()
    let record: UserRecord
    let layout: FileLayout
    do {
        (record, layout) = try codec.decodeFile(bytes)
    } catch {
        _ = error.description  // every error must describe itself without trapping
        _ = try? bytes.withUnsafeBytes { try codec.scanLayout($0) }
        return nil
    }
    guard let header else { return "decode succeeded but readHeader failed" }
    guard header.userID.utf8.elementsEqual(record.userID.utf8) else { return "readHeader's user id differs" }
    if layout.frameCount == 0 {
        guard header.revision == record.revision, header.createdAt == record.createdAt,
            header.updatedAt == record.updatedAt
        else { return "readHeader disagrees with decode" }
    }
    guard var scanned = try? bytes.withUnsafeBytes({ try codec.scanLayout($0) }) else {
        return "decodeFile succeeded but scanLayout failed"
    }
    scanned.itemCount = layout.itemCount
    scanned.itemCountIsKnown = true
    guard scanned == layout else { return "scanLayout \(scanned) disagrees with decodeFile \(layout)" }
    guard layout.validLength + layout.ignoredLength == bytes.count else {
        return "layout lengths do not add up"
    }
    if layout.ignoredLength > 0 {
        guard let valid = try? codec.decodeFile(Array(bytes[..<layout.validLength])),
            valid.layout.ignoredLength == 0, valid.record == record || hasNaNAnswer(record)
        else { return "the valid bytes alone do not decode to the same record" }
    }
    for codec in fuzzCodecs {
        let encoded = codec.encode(record, fileID: fuzzFileID)
        let again: UserRecord
        do { again = try codec.decode(encoded) } catch {
            return "re-encoded record does not decode: \(error)"
        }
        if again != record {
            guard hasNaNAnswer(record), codec.encode(again, fileID: fuzzFileID) == encoded else {
                return "re-encoded record decodes to a different record"
            }
        }
        guard again.userID.utf8.elementsEqual(record.userID.utf8) else {
            return "user id changed bytes on a round trip"
        }
    }
    if let lastID = layout.lastID, record.revision < UInt64.max, !hasNaNAnswer(record) {
        var next = record
        next.revision += 1
        next.transactions.removeFirst(min(1, next.transactions.count))
        next.preferences["fuzz"] = Preference(value: "x", updatedAt: record.updatedAt)
        let loose = RecordCodec(limits: .init(maxFileSize: .max, maxDecodedSize: .max, maxItemCount: .max))
        guard let frame = loose.encodeChange(from: record, to: next, appendingTo: layout, id: fuzzFileID)
        else {
            return "encodeChange refused a plain change"
        }
        guard frame.bytes.withUnsafeBytes({ loose.startsWithFrame($0, chainedTo: lastID) }) else {
            return "startsWithFrame refuses a frame encodeChange made"
        }
        let appended = Array(bytes[..<layout.validLength]) + frame.bytes
        guard let changed = try? loose.decodeFile(appended), changed.record == next,
            changed.layout == layout.appending(frame)
        else { return "an appended frame does not decode to the changed record" }
    }
    return nil
}

private let fuzzCodecs = [
    RecordCodec(),
    RecordCodec(options: .init(compression: .none)),
    RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 0)),
    RecordCodec(options: .init(compression: .zstd(level: 3), compressionThreshold: 0)),
]

/// The input with every CRC that its lengths let us find recomputed (header, sections, and the
/// frames of a version-2 file), so that mutated bytes get past the checksums into the payload and
/// part parsers (most random mutations fail a CRC check first).
public func repairingChecksums(_ input: [UInt8]) -> [UInt8] {
    var bytes = input
    func u32(_ at: Int) -> Int {
        (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) }
    }
    func put(_ value: UInt32, at: Int) {
        for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
    guard bytes.count >= 48 else { return bytes }
    let shift = bytes[8] >= 2 ? 16 : 0  // the file id of versions 2 and 3
    guard bytes.count >= 48 + shift else { return bytes }
    let idLength = u32(40 + shift)
    guard idLength <= bytes.count - 48 - shift else { return bytes }
    put(CRC32C.checksum(bytes[0..<(44 + shift + idLength)]), at: 44 + shift + idLength)
    var position = 48 + shift + idLength
    for _ in 0..<u32(36 + shift) {
        guard position + 8 <= bytes.count else { break }
        let length = u32(position + 4)
        guard length <= bytes.count - position - 12 else { break }
        put(CRC32C.checksum(bytes[position..<(position + 8 + length)]), at: position + 8 + length)
        position += 12 + length
    }
    guard shift == 16 else { return bytes }
    // Frames: marker, length, ..., CRC of everything before it.
    while position + 8 <= bytes.count, Array(bytes[position..<(position + 4)]) == RecordCodec.frameMarker {
        let length = u32(position + 4)
        guard length >= RecordCodec.minFrameLength, length <= bytes.count - position else { break }
        put(CRC32C.checksum(bytes[position..<(position + length - 4)]), at: position + length - 4)
        position += length
    }
    return bytes
}
