import CHardwareCRC

/// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), as used by iSCSI, ext4 and
/// SCTP. With the processor's CRC-32C instruction where it has one (SSE 4.2 on x86-64, the CRC
/// extension on 64-bit Arm: `CHardwareCRC`), else software slice-by-8: eight 256-entry tables,
/// eight bytes per step. Both give the same values.
///
/// `checksum` gives the standard value (initial value and final xor 0xFFFFFFFF), so
/// `checksum("123456789".utf8) == 0xE3069283`. `update(_:with:)` continues a finished checksum
/// over more bytes, like zlib's `crc32(crc, buf, len)`: `update(checksum(a), with: b) == checksum(a + b)`.
public enum CRC32C {
    /// The checksum of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        update(0, with: bytes)
    }

    /// The checksum of the bytes in `buffer`.
    public static func checksum(_ buffer: UnsafeRawBufferPointer) -> UInt32 {
        ~raw(~0, buffer)
    }

    /// Continues `crc` (the checksum of earlier bytes, or 0 for none) over `bytes`.
    public static func update(_ crc: UInt32, with bytes: some Sequence<UInt8>) -> UInt32 {
        if let r = bytes.withContiguousStorageIfAvailable({ ~raw(~crc, UnsafeRawBufferPointer($0)) }) {
            return r
        }
        return Array(bytes).withUnsafeBytes { ~raw(~crc, $0) }
    }

    /// Continues `crc` over the bytes in `buffer`.
    public static func update(_ crc: UInt32, with buffer: UnsafeRawBufferPointer) -> UInt32 {
        ~raw(~crc, buffer)
    }

    /// Whether this process computes CRCs with the processor's instruction.
    public static let usesHardware = carbonstore_crc32c_available() != 0

    /// The running (pre-inverted) CRC over `buffer`.
    @usableFromInline
    static func raw(_ start: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard usesHardware, let base = buffer.baseAddress else { return software(start, buffer) }
        return carbonstore_crc32c_update(start, base, buffer.count)
    }

    /// `raw` with the tables, whatever the processor has (tests compare the two).
    static func software(_ start: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        var crc = start
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return crc }
        let count = buffer.count
        return tables.withUnsafeBufferPointer { t -> UInt32 in
            var i = 0
            // Byte at a time until 8-byte aligned, then 8 bytes per step.
            while i < count, (Int(bitPattern: base) &+ i) & 7 != 0 {
                crc = t[Int((crc ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                i &+= 1
            }
            while i &+ 8 <= count {
                let word = UInt64(littleEndian: base.load(fromByteOffset: i, as: UInt64.self))
                let lo = UInt32(truncatingIfNeeded: word) ^ crc
                let hi = UInt32(truncatingIfNeeded: word >> 32)
                crc =
                    t[7 &* 256 &+ Int(lo & 0xFF)] ^ t[6 &* 256 &+ Int((lo >> 8) & 0xFF)]
                    ^ t[5 &* 256 &+ Int((lo >> 16) & 0xFF)] ^ t[4 &* 256 &+ Int(lo >> 24)]
                    ^ t[3 &* 256 &+ Int(hi & 0xFF)] ^ t[2 &* 256 &+ Int((hi >> 8) & 0xFF)]
                    ^ t[1 &* 256 &+ Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i &+= 8
            }
            while i < count {
                crc = t[Int((crc ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                i &+= 1
            }
            return crc
        }
    }

    /// Table k maps a byte to its CRC contribution k bytes further back; table 0 is the classic one.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[n] = c
        }
        for n in 0..<256 {
            var c = t[n]
            for k in 1..<8 {
                c = t[Int(c & 0xFF)] ^ (c >> 8)
                t[k * 256 + n] = c
            }
        }
        return t
    }()
}
