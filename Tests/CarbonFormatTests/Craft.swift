import CarbonModel
import Testing

@testable import CarbonFormat

/// Builds files by hand from docs/FORMAT.md, independently of the encoder, so tests can write
/// exactly the damage or the hostile values they need, with valid checksums.
enum Craft {
    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }

    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }

    static func zigzag(_ v: Int64) -> [UInt8] { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

    static func string(_ s: String) -> [UInt8] { varint(UInt64(s.utf8.count)) + Array(s.utf8) }

    static func header(
        userID: [UInt8] = Array("u".utf8), sectionCount: UInt32, version: UInt16 = 1, flags: UInt16 = 0,
        revision: UInt64 = 7, createdAt: Int64 = 1000, updatedAt: Int64 = 2000, userIDLength: UInt32? = nil
    ) -> [UInt8] {
        // Versions 2 and 3 carry a 16-byte file id after the flags.
        var h = RecordCodec.magic + le16(version) + le16(flags) + (version >= 2 ? testFileID.bytes : [])
        h += le64(revision)
        h += le64(UInt64(bitPattern: createdAt)) + le64(UInt64(bitPattern: updatedAt))
        h += le32(sectionCount) + le32(userIDLength ?? UInt32(userID.count)) + userID
        return h + le32(CRC32C.checksum(h))
    }

    static func section(tag: UInt16, flags: UInt16 = 0, body: [UInt8], length: UInt32? = nil) -> [UInt8] {
        let s = le16(tag) + le16(flags) + le32(length ?? UInt32(body.count)) + body
        return s + le32(CRC32C.checksum(s))
    }

    /// A compressed section body: u32 raw length, then the zlib stream.
    static func compressed(_ raw: [UInt8], declaredLength: UInt32? = nil, level: Int32 = 6) -> [UInt8] {
        let packed = raw.withUnsafeBytes { RecordCodec.deflate($0, level: level)! }
        return le32(declaredLength ?? UInt32(raw.count)) + packed
    }

    /// A zstd section body (version 3): u32 raw length, then one zstd frame made by libzstd.
    static func zstdCompressed(_ raw: [UInt8], declaredLength: UInt32? = nil, level: Int32 = 1) -> [UInt8] {
        let frame = raw.withUnsafeBytes { Zstd.shared!.compress($0, level: level)! }
        return le32(declaredLength ?? UInt32(raw.count)) + frame
    }

    /// A zstd frame written by hand (RFC 8878 §3.1.1): one raw block holding `raw` (at most 255
    /// bytes), with the content size in the header or not, and a dictionary id or not.
    static func handFrame(_ raw: [UInt8], contentSize: Bool = true, dictionaryID: UInt8? = nil) -> [UInt8] {
        precondition(raw.count <= 255)
        // Frame header descriptor: bit 5 single segment (then a 1-byte content size), bits 0-1 the
        // dictionary id's size. Without single segment and content size, a window descriptor.
        var descriptor: UInt8 = contentSize ? 0x20 : 0x00
        if dictionaryID != nil { descriptor |= 0x01 }
        var f: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, descriptor]
        if !contentSize { f.append(0x00) }  // window 1 KiB
        if let dictionaryID { f.append(dictionaryID) }
        if contentSize { f.append(UInt8(raw.count)) }
        let block = UInt32(1) | UInt32(raw.count) << 3  // last block, raw, size
        f += [UInt8(block & 0xFF), UInt8(block >> 8 & 0xFF), UInt8(block >> 16 & 0xFF)]
        return f + raw
    }

    static func file(_ sections: [[UInt8]], userID: [UInt8] = Array("u".utf8), version: UInt16 = 1) -> [UInt8]
    {
        header(userID: userID, sectionCount: UInt32(sections.count), version: version)
            + sections.flatMap { $0 }
    }

    /// A valid file with the header's section count replaced (and the header CRC fixed).
    static func withSectionCount(_ bytes: [UInt8], _ count: UInt32) -> [UInt8] {
        var b = bytes
        let shift = idShift(b)
        b.replaceSubrange((36 + shift)..<(40 + shift), with: le32(count))
        let end = headerEnd(b)
        b.replaceSubrange(end..<(end + 4), with: le32(CRC32C.checksum(b[..<end])))
        return b
    }

    static func headerEnd(_ b: [UInt8]) -> Int {
        let s = idShift(b)
        return 44 + s
            + Int(
                UInt32(b[40 + s]) | UInt32(b[41 + s]) << 8 | UInt32(b[42 + s]) << 16 | UInt32(b[43 + s]) << 24
            )
    }

    /// 16 in a version-2 or version-3 file (the file id at offset 12 moves the later header
    /// fields), else 0.
    static func idShift(_ b: [UInt8]) -> Int { b[8] >= 2 ? 16 : 0 }

    /// A transactions payload of one row with the given parts (columns in spec order).
    static func transactionsPayload(
        count: UInt64 = 1, dictionary: [String] = ["EUR"], id: String = "t1", time: Int64 = 5,
        amount: Int64 = 100,
        currency: UInt64 = 0, merchant: UInt64 = 0, mcc: UInt64 = 0, category: UInt64 = 0,
        account: UInt64 = 0,
        description: [UInt8] = [0], metadata: [UInt8] = [0]
    ) -> [UInt8] {
        var p = varint(count) + varint(UInt64(dictionary.count)) + dictionary.flatMap(string)
        p += string(id) + zigzag(time) + zigzag(amount) + varint(currency) + varint(merchant) + varint(mcc)
        p += varint(category) + varint(account) + description + metadata
        return p
    }

    static func decode(_ bytes: [UInt8]) -> Result<UserRecord, FormatError> {
        Result(catching: { () throws(FormatError) -> UserRecord in try RecordCodec().decode(bytes) })
    }

    /// The error decoding `bytes` gives, or nil (and a recorded issue) if it decodes.
    static func error(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> FormatError? {
        switch decode(bytes) {
        case .success:
            Issue.record("decoded without error", sourceLocation: sourceLocation)
            return nil
        case .failure(let e): return e
        }
    }
}

extension Array where Element == UInt8 {
    var hex: String { map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}
