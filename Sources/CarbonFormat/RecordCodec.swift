import CZlib
import CarbonModel

/// The fixed part of a file: everything before the sections.
public struct FileHeader: Sendable, Hashable {
    public var formatVersion: UInt16
    public var flags: UInt16
    public var userID: String
    public var revision: UInt64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    /// How many sections follow the header.
    public var sectionCount: Int
    /// Bytes the header occupies, including its CRC; the first section starts here.
    public var byteCount: Int
    /// The snapshot's id (version 2, header bytes 12 ..< 28); nil in a version-1 file.
    public var fileID: WriteID?

    public init(
        formatVersion: UInt16, flags: UInt16, userID: String, revision: UInt64, createdAt: Timestamp,
        updatedAt: Timestamp, sectionCount: Int, byteCount: Int, fileID: WriteID? = nil
    ) {
        self.fileID = fileID
        self.formatVersion = formatVersion
        self.flags = flags
        self.userID = userID
        self.revision = revision
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.sectionCount = sectionCount
        self.byteCount = byteCount
    }
}

/// Where one section sits in a file (see `RecordCodec.layout(of:)`).
public struct SectionInfo: Sendable, Hashable {
    public var tag: UInt16
    public var flags: UInt16
    /// File offset of the section's first byte (its tag).
    public var offset: Int
    /// Bytes of the section's body as stored (after the 8-byte section header, before the CRC).
    public var storedLength: Int
    /// Bytes of the payload once inflated; equal to `storedLength` when not compressed.
    public var rawLength: Int
    public var checksum: UInt32

    public var name: String { SectionTag.name(of: tag) }
    /// Whether the body is compressed (a zlib stream, or a zstd frame in version 3). Always false
    /// for an unknown tag, whose flags are preserved, not interpreted.
    public var isCompressed: Bool {
        SectionTag.isKnown(tag) && flags & (RecordCodec.compressedFlag | RecordCodec.zstdFlag) != 0
    }
    /// Whether the body is a zstd frame (version 3; known tags only).
    public var isZstd: Bool { SectionTag.isKnown(tag) && flags & RecordCodec.zstdFlag != 0 }
}

/// Encodes a `UserRecord` to the CarbonStore binary format (docs/FORMAT.md) and decodes it back.
///
/// Decoding checks every length before it allocates, every CRC, every value; damaged or truncated
/// bytes give a `FormatError` naming what is wrong and where, never a partial record.
public struct RecordCodec: Sendable {
    public enum Compression: Sendable, Hashable {
        case none
        /// zlib (RFC 1950) with a level from 1 (fastest) to 9 (smallest); 0 disables compression.
        /// Files are version 2, which readers of every earlier release of version 2 read.
        case zlib(level: Int32)
        /// zstd (RFC 8878) with a level from 1 (fastest) to 19 (smallest); 0 disables compression.
        /// A file with a zstd section is version 3. Where libzstd's shared library is missing
        /// (`RecordCodec.zstdVersion` is nil), sections are compressed with zlib at level 1 instead.
        case zstd(level: Int32)
    }

    public struct Options: Sendable {
        public var compression: Compression
        /// Sections whose payload is smaller than this many bytes are stored raw.
        public var compressionThreshold: Int

        public init(compression: Compression = .zstd(level: 1), compressionThreshold: Int = 512) {
            self.compression = compression
            self.compressionThreshold = compressionThreshold
        }
    }

    /// How large a record may be. A reader refuses a file beyond any of these limits as damaged
    /// (`limitExceeded`) before it reads, allocates or inflates anything for it; a writer using
    /// `encodeChecked` refuses to produce such a file, and `encode` stores raw any section whose
    /// compression would exceed `maxCompressionRatio`, so that no file the engine writes is refused
    /// later by a reader with the same limits. Decoding therefore never needs more memory and time
    /// than a small multiple of these sizes. See docs/FORMAT.md §8.
    public struct Limits: Sendable, Hashable {
        /// Largest file, in bytes. Default 8 MiB: a heavy user (20,000 transactions and 20,000
        /// footprints) takes about 1.3 MB.
        public var maxFileSize: Int
        /// Largest sum of the payload sizes of all sections, compressed ones counted at their
        /// declared (inflated) size and unknown ones as stored. Default 16 MiB: the heavy user's
        /// payloads add up to about 2.4 MB.
        public var maxDecodedSize: Int
        /// Largest ratio of a compressed section's declared size to its zlib stream's size.
        /// Default 128; deflate itself cannot exceed 1032, real sections compress 2 to 10 times.
        public var maxCompressionRatio: Int
        /// Largest number of items in all sections: rows (transactions, responses, preferences,
        /// footprints, savings), dictionary strings, choices and metadata entries. It bounds the
        /// memory of the decoded record, whose smallest items take 1 to 10 bytes in the file but
        /// 16 to 200 in memory. Default 250,000: the heavy user holds about 56,000.
        public var maxItemCount: Int

        public static let defaultMaxFileSize = 8 << 20
        public static let defaultMaxDecodedSize = 16 << 20
        public static let defaultMaxCompressionRatio = 128
        public static let defaultMaxItemCount = 250_000

        public init(
            maxFileSize: Int = defaultMaxFileSize, maxDecodedSize: Int = defaultMaxDecodedSize,
            maxCompressionRatio: Int = defaultMaxCompressionRatio, maxItemCount: Int = defaultMaxItemCount
        ) {
            self.maxFileSize = maxFileSize
            self.maxDecodedSize = maxDecodedSize
            self.maxCompressionRatio = maxCompressionRatio
            self.maxItemCount = maxItemCount
        }
    }

    /// `\x89 C S T \r \n \x1A \n`: the high bit, CR LF, ^Z and LF catch 7-bit and text-mode transfers.
    public static let magic: [UInt8] = [0x89, 0x43, 0x53, 0x54, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The newest version this code writes: 3 when a section is compressed with zstd, else 2.
    /// It reads versions 1 to 3 (`readableVersions`).
    public static let formatVersion: UInt16 = 3
    /// The versions this code reads.
    public static let readableVersions: ClosedRange<UInt16> = 1...3
    /// Section flag: the body is a u32 raw length followed by a zlib stream.
    public static let compressedFlag: UInt16 = 0x0001
    /// Section flag (version 3): the body is a u32 raw length followed by one zstd frame.
    public static let zstdFlag: UInt16 = 0x0002
    public static let maxUserIDLength = 65_535
    /// Deflate's largest possible expansion: a compressed section claiming more is damaged.
    public static let maxDeflateRatio = 1032
    /// Bytes of a version-1 header before the user id.
    static let fixedHeaderLength = 44
    /// Bytes of a version-2 header before the user id (the 16-byte file id is added at offset 12).
    static let fixedHeaderLengthV2 = 60

    public var options: Options
    public var limits: Limits
    /// libzstd, or nil where it is missing (tests set nil to see what such a machine does).
    var zstd: Zstd? = Zstd.shared

    public init(options: Options = .init(), limits: Limits = .init()) {
        self.options = options
        self.limits = limits
    }

    // MARK: Encoding

    /// The file for `record` (version 2 or 3, no change frames, a fresh random `fileID`), whatever its
    /// size. A store writes with `encodeChecked` or `encodeSnapshot`, which refuse a record its
    /// readers would refuse.
    public func encode(_ record: UserRecord) -> [UInt8] {
        encode(record, fileID: .random())
    }

    /// The file for `record` with the given snapshot id (version 3 when a section is compressed
    /// with zstd, else 2): the same record and id give the same bytes.
    public func encode(_ record: UserRecord, fileID: WriteID) -> [UInt8] {
        encodeMeasuring(record, version: 2, fileID: fileID).bytes
    }

    /// The version-1 file for `record` (docs/FORMAT.md: still readable, no longer written by the
    /// store). For tests of compatibility and of the upgrade on the next write.
    package func encodeVersion1(_ record: UserRecord) -> [UInt8] {
        encodeMeasuring(record, version: 1, fileID: nil).bytes
    }

    /// The file for `record` (version 2 or 3, a fresh random `fileID`), or `RecordTooLargeError` if the
    /// file or its decoded payloads would be beyond `limits`, so that no file written is later
    /// refused by a reader with the same limits.
    public func encodeChecked(_ record: UserRecord) throws(RecordTooLargeError) -> [UInt8] {
        try encodeSnapshot(record, fileID: .random()).bytes
    }

    /// `encodeChecked` with the given snapshot id.
    public func encodeChecked(_ record: UserRecord, fileID: WriteID) throws(RecordTooLargeError) -> [UInt8] {
        try encodeSnapshot(record, fileID: fileID).bytes
    }

    /// Throws if a file of `size` bytes, `decoded` payload bytes and `items` items is beyond `limits`.
    func checkLimits(userID: String, size: Int, decoded: Int, items: Int) throws(RecordTooLargeError) {
        guard size <= limits.maxFileSize else {
            throw RecordTooLargeError(
                userID: userID, limit: .fileSize, size: size, maximum: limits.maxFileSize)
        }
        guard decoded <= limits.maxDecodedSize else {
            throw RecordTooLargeError(
                userID: userID, limit: .decodedSize, size: decoded, maximum: limits.maxDecodedSize)
        }
        guard items <= limits.maxItemCount else {
            throw RecordTooLargeError(
                userID: userID, limit: .itemCount, size: items, maximum: limits.maxItemCount)
        }
    }

    /// The file, the sum of its sections' payload sizes and its number of items, as a reader
    /// counts them, and its version. `version` is 1 or 2: a version-2 file whose sections are
    /// compressed with zstd is written as version 3 (version 1 never uses zstd). `fileID` is
    /// written for versions 2 and 3.
    func encodeMeasuring(_ record: UserRecord, version: UInt16, fileID: WriteID?) -> (
        bytes: [UInt8], decoded: Int, items: Int, version: UInt16
    ) {
        var decoded = 0
        var usedZstd = false
        let zstdAllowed = version >= 2 && zstd != nil
        var w = ByteWriter(capacity: 256 + record.transactions.count * 40 + record.footprints.count * 24)
        w.bytes.append(contentsOf: Self.magic)
        w.u16(version)
        w.u16(0)
        if version >= 2 {
            let id = fileID ?? WriteID(high: 0, low: 0)
            w.u64(id.low)
            w.u64(id.high)
        }
        w.u64(record.revision)
        w.u64(UInt64(bitPattern: record.createdAt.millisecondsSince1970))
        w.u64(UInt64(bitPattern: record.updatedAt.millisecondsSince1970))
        let countOffset = w.count
        w.u32(0)
        // The model does not bound the id; a longer one is cut at a character boundary rather than
        // producing a file no reader accepts. (The store rejects such ids long before this.)
        var id = record.userID
        if id.utf8.count > Self.maxUserIDLength {
            var cut = ""
            for ch in id {
                if cut.utf8.count + String(ch).utf8.count > Self.maxUserIDLength { break }
                cut.append(ch)
            }
            id = cut
        }
        w.u32(UInt32(id.utf8.count))
        w.utf8(id)
        let headerEnd = w.count
        w.u32(0)

        var sections: UInt32 = 0
        if !record.transactions.isEmpty {
            section(SectionTag.transactions, &w, &decoded, &usedZstd, zstdAllowed) {
                TransactionsSection.encode(record.transactions.array, into: &$0)
            }
            sections += 1
        }
        if !record.responses.isEmpty {
            section(SectionTag.responses, &w, &decoded, &usedZstd, zstdAllowed) {
                ResponsesSection.encode(record.responses.array, into: &$0)
            }
            sections += 1
        }
        if !record.preferences.isEmpty {
            section(SectionTag.preferences, &w, &decoded, &usedZstd, zstdAllowed) {
                PreferencesSection.encode(record.preferences, into: &$0)
            }
            sections += 1
        }
        if !record.footprints.isEmpty {
            section(SectionTag.footprints, &w, &decoded, &usedZstd, zstdAllowed) {
                FootprintsSection.encode(record.footprints.array, into: &$0)
            }
            sections += 1
        }
        if !record.savings.isEmpty {
            section(SectionTag.savings, &w, &decoded, &usedZstd, zstdAllowed) {
                SavingsSection.encode(record.savings.array, into: &$0)
            }
            sections += 1
        }
        for p in record.preservedSections where Self.isPreservable(p) {
            let start = w.count
            w.u16(p.tag)
            w.u16(p.flags)
            w.u32(UInt32(p.payload.count))
            w.bytes.append(contentsOf: p.payload)
            decoded += p.payload.count
            let crc = w.bytes.withUnsafeBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...]))
            }
            w.u32(crc)
            sections += 1
        }
        w.patchU32(sections, at: countOffset)
        let written: UInt16 = usedZstd ? 3 : version
        if written != version { w.patchU16(written, at: Self.magic.count) }
        let headerCRC = w.bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<headerEnd]))
        }
        w.patchU32(headerCRC, at: headerEnd)
        return (w.bytes, decoded, w.items, written)
    }

    /// The first transaction that `after` holds and `before` does not hold in the same place whose
    /// value every reader refuses (a merchant category code above 9999), or nil. It looks only at
    /// what changed, so a writer can refuse a change before it makes a file no reader accepts.
    public static func firstUnwritableTransaction(from before: UserRecord, to after: UserRecord)
        -> Transaction?
    {
        guard let s = splice(before.transactions, after.transactions) else { return nil }
        return s.rows.first { ($0.mcc ?? 0) > 9999 }
    }

    /// Whether `encode` writes a preserved section back: only what a reader would preserve again
    /// (not tag 0, not a known tag, not a critical tag, and not larger than a u32 length).
    public static func isPreservable(_ p: PreservedSection) -> Bool {
        p.tag != 0 && !SectionTag.isKnown(p.tag) && p.tag & SectionTag.criticalBit == 0
            && p.payload.count <= Int(UInt32.max)
    }

    /// Writes one known section; compresses it when that pays and stays within the ratio a reader
    /// accepts. Adds the payload's size to `decoded`; sets `usedZstd` when it writes a zstd frame
    /// (only if `zstdAllowed`; otherwise zstd options compress with zlib at level 1).
    private func section(
        _ tag: UInt16, _ w: inout ByteWriter, _ decoded: inout Int, _ usedZstd: inout Bool,
        _ zstdAllowed: Bool,
        _ body: (inout ByteWriter) -> Void
    ) {
        let start = w.count
        w.u16(tag)
        w.u16(0)
        w.u32(0)
        let payloadStart = w.count
        body(&w)
        let rawLength = w.count - payloadStart
        decoded += rawLength
        if let (method, level) = Self.method(options.compression, zstdAllowed: zstdAllowed), level != 0,
            rawLength >= options.compressionThreshold, rawLength <= Int(UInt32.max),
            let packed = w.bytes.withUnsafeBytes({ (all) -> [UInt8]? in
                let payload = UnsafeRawBufferPointer(rebasing: all[payloadStart...])
                return method == Self.zstdFlag
                    ? zstd?.compress(payload, level: level) : Self.deflate(payload, level: level)
            }), packed.count + 4 < rawLength,
            rawLength <= packed.count * max(limits.maxCompressionRatio, 0),
            method == Self.zstdFlag || rawLength <= packed.count * Self.maxDeflateRatio
        {
            w.bytes.removeSubrange(payloadStart...)
            w.u32(UInt32(rawLength))
            w.bytes.append(contentsOf: packed)
            w.patchU16(method, at: start + 2)
            if method == Self.zstdFlag { usedZstd = true }
        }
        w.patchU32(UInt32(w.count - payloadStart), at: start + 4)
        let crc = w.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        w.u32(crc)
    }

    /// The section flag and level that `compression` compresses with: zstd's flag only where
    /// `zstdAllowed` (a version-2 or later file, and libzstd present), else zlib at level 1; nil for
    /// none. zstd levels are clamped to 1 to 19; 0 means no compression.
    static func method(_ compression: Compression, zstdAllowed: Bool) -> (flag: UInt16, level: Int32)? {
        switch compression {
        case .none: return nil
        case .zlib(let level): return (compressedFlag, level)
        case .zstd(let level):
            guard level != 0 else { return (zstdFlag, 0) }
            guard zstdAllowed else { return (compressedFlag, 1) }
            return (zstdFlag, min(max(level, 1), 19))
        }
    }

    /// What the snapshots this codec writes are, for a server's start-up log: e.g. "version 3
    /// (zstd 1.5.4, level 1)", or "version 2 (zlib level 1: libzstd.so.1 was not found ...)".
    public var writtenFormat: String {
        guard let (flag, level) = Self.method(options.compression, zstdAllowed: zstd != nil), level != 0
        else {
            return "version 2 (uncompressed)"
        }
        if flag == Self.zstdFlag, let zstd { return "version 3 (zstd \(zstd.version), level \(level))" }
        if case .zstd = options.compression {
            return
                "version 2 (zlib level 1: libzstd.so.1 was not found; install libzstd1 to write version 3 with zstd)"
        }
        return "version 2 (zlib level \(level), \(Self.compressionLibrary))"
    }

    /// libzstd's version where its shared library was found (e.g. "1.5.4"), else nil: then
    /// `.zstd` options compress with zlib, and a zstd section cannot be read.
    public static var zstdVersion: String? { Zstd.shared?.version }

    // MARK: Decoding

    /// The record of a version-1 or version-2 file (the snapshot and every valid change frame; see
    /// `decodeFile` for the layout too).
    public func decode(_ bytes: [UInt8]) throws(FormatError) -> UserRecord {
        try decodeFile(bytes).record
    }

    /// Decodes any contiguous collection of bytes (e.g. Foundation's `Data`); others are copied first.
    public func decode<C: Collection<UInt8>>(_ bytes: C) throws(FormatError) -> UserRecord {
        let result: Result<UserRecord, FormatError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result(catching: { () throws(FormatError) -> UserRecord in
                try decode(UnsafeRawBufferPointer(buffer))
            })
        }
        if let result { return try result.get() }
        return try decode(Array(bytes))
    }

    public func decode(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> UserRecord {
        try decodeFile(buffer).record
    }

    /// The whole-file size check every reader does first.
    func checkFileSize(_ count: Int) throws(FormatError) {
        guard count <= limits.maxFileSize else {
            throw FormatError(
                .limitExceeded, offset: limits.maxFileSize,
                detail:
                    "the file is \(count) bytes, above the limit of \(limits.maxFileSize) bytes (RecordCodec.Limits.maxFileSize)"
            )
        }
    }

    /// The snapshot (header and sections) at the start of `buffer`: the record it holds, its header,
    /// where it ends, and the payload bytes and items counted so far. A version-1 file must end
    /// there (`trailingBytes`); a version-2 file may go on with change frames.
    func decodeSnapshot(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> (
        record: UserRecord, header: FileHeader, end: Int, decoded: Int, items: Int
    ) {
        var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
        let header = try Self.readHeader(&r)
        var record = UserRecord(
            userID: header.userID, revision: header.revision, createdAt: header.createdAt,
            updatedAt: header.updatedAt)
        var seen: UInt32 = 0
        var decoded = 0
        var items = 0
        for index in 0..<header.sectionCount {
            let (info, body) = try Self.readSection(
                &r, index: index, of: header.sectionCount, version: header.formatVersion)
            let tag = info.tag
            // Counted before anything is allocated or inflated for the section.
            decoded += info.rawLength
            guard decoded <= limits.maxDecodedSize else {
                throw FormatError(
                    .limitExceeded, offset: info.offset, sectionTag: tag,
                    detail:
                        "the payloads of the first \(index + 1) sections add up to \(decoded) bytes (this one \(info.rawLength)), above the limit of \(limits.maxDecodedSize) bytes (RecordCodec.Limits.maxDecodedSize)"
                )
            }
            guard SectionTag.isKnown(tag) else {
                record.preservedSections.append(
                    PreservedSection(tag: tag, flags: info.flags, payload: Array(body)))
                continue
            }
            guard seen & (1 << UInt32(tag)) == 0 else {
                throw FormatError(
                    .duplicateSection, offset: info.offset, sectionTag: tag,
                    detail: "a second '\(info.name)' section")
            }
            seen |= 1 << UInt32(tag)
            let payloadOffset = info.offset + 8
            if info.isCompressed {
                let raw =
                    info.isZstd
                    ? try Self.unzstd(
                        body, offset: payloadOffset, tag: tag, maxRatio: limits.maxCompressionRatio,
                        library: zstd)
                    : try Self.inflate(
                        body, offset: payloadOffset, tag: tag, maxRatio: limits.maxCompressionRatio)
                items = try withBytes(raw) { (b) throws(FormatError) -> Int in
                    var sr = ByteReader(
                        b, context: ReaderContext(fileOffset: payloadOffset, inflated: true, tag: tag),
                        items: items, maxItems: limits.maxItemCount)
                    try Self.decodePayload(tag, &sr, into: &record)
                    return sr.items
                }
            } else {
                var sr = ByteReader(
                    body, context: ReaderContext(fileOffset: payloadOffset, tag: tag), items: items,
                    maxItems: limits.maxItemCount)
                try Self.decodePayload(tag, &sr, into: &record)
                items = sr.items
            }
        }
        guard header.formatVersion >= 2 || r.atEnd else {
            throw r.error(
                .trailingBytes, "\(r.remaining) bytes after the last of \(header.sectionCount) sections")
        }
        return (record, header, r.pos, decoded, items)
    }

    private static func decodePayload(_ tag: UInt16, _ r: inout ByteReader, into record: inout UserRecord)
        throws(FormatError)
    {
        switch tag {
        case SectionTag.transactions: record.transactions = ItemList(try TransactionsSection.decode(&r))
        case SectionTag.responses: record.responses = ItemList(try ResponsesSection.decode(&r))
        case SectionTag.preferences: record.preferences = try PreferencesSection.decode(&r)
        case SectionTag.footprints:
            record.footprints = ItemList(
                try FootprintsSection.decode(&r, transactions: record.transactions.array))
        default: record.savings = ItemList(try SavingsSection.decode(&r))
        }
        guard r.atEnd else {
            throw r.error(.trailingBytes, "\(r.remaining) bytes after the end of the section's content")
        }
    }

    // MARK: Header and sections

    /// The section flags that a known section may carry in a file of `version`: bit 0 (zlib) in
    /// every version, bit 1 (zstd) from version 3 on.
    static func sectionFlags(version: UInt16) -> UInt16 {
        version >= 3 ? compressedFlag | zstdFlag : compressedFlag
    }

    /// Reads and verifies the header (magic, version, flags, CRC) without decoding any section.
    /// `bytes` may be just a prefix of the file, as long as it holds the whole header.
    public static func readHeader(_ bytes: [UInt8]) throws(FormatError) -> FileHeader {
        try withBytes(bytes) { (buffer) throws(FormatError) -> FileHeader in try readHeader(buffer) }
    }

    public static func readHeader(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> FileHeader {
        var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
        return try readHeader(&r)
    }

    /// The header and where every section is, with every CRC checked, without decoding payloads.
    /// In a version-2 file the change frames after the sections are walked (length, CRC, chain)
    /// but not listed: `inspect(_:)` lists them.
    public static func layout(of bytes: [UInt8]) throws(FormatError) -> (
        header: FileHeader, sections: [SectionInfo]
    ) {
        let report = try inspect(bytes)
        return (report.header, report.sections)
    }

    /// The header and sections (every CRC checked, payloads not decoded) of a version-1 file, and
    /// where the sections end.
    static func snapshotLayout(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> (
        header: FileHeader, sections: [SectionInfo], end: Int
    ) {
        var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
        let header = try readHeader(&r)
        var sections: [SectionInfo] = []
        for index in 0..<header.sectionCount {
            sections.append(
                try readSection(&r, index: index, of: header.sectionCount, version: header.formatVersion).0)
        }
        guard header.formatVersion >= 2 || r.atEnd else {
            throw r.error(
                .trailingBytes, "\(r.remaining) bytes after the last of \(header.sectionCount) sections")
        }
        return (header, sections, r.pos)
    }

    static func readHeader(_ r: inout ByteReader) throws(FormatError) -> FileHeader {
        let available = min(r.remaining, magic.count)
        for i in 0..<available where r.buffer[i] != magic[i] {
            let found = (0..<available).map { hex(r.buffer[$0]) }.joined(separator: " ")
            throw FormatError(
                .badMagic, offset: i,
                detail: "expected 89 43 53 54 0d 0a 1a 0a (\"\\x89CST\\r\\n\\x1a\\n\"), found \(found)")
        }
        guard r.remaining >= magic.count + 2 else {
            throw FormatError(
                .truncated, offset: r.remaining, detail: "\(r.remaining) bytes, too short for a header")
        }
        r.pos = magic.count
        let version = try r.u16("format version")
        guard readableVersions.contains(version) else {
            throw FormatError(
                .unsupportedVersion, offset: 8,
                detail:
                    "the file has format version \(version); this reader supports versions \(readableVersions.lowerBound) to \(readableVersions.upperBound)"
            )
        }
        let flags = try r.u16("file flags")
        var fileID: WriteID?
        if version >= 2 {
            let low = try r.u64("file id")
            let high = try r.u64("file id")
            fileID = WriteID(high: high, low: low)
        }
        let revision = try r.u64("revision")
        let created = Int64(bitPattern: try r.u64("createdAt"))
        let updated = Int64(bitPattern: try r.u64("updatedAt"))
        let count = try r.u32("section count")
        let idLength = try r.u32("user id length")
        guard idLength <= maxUserIDLength else {
            throw r.error(
                .limitExceeded, "user id length \(idLength) is above the limit of \(maxUserIDLength) bytes",
                at: r.pos - 4)
        }
        guard Int(idLength) + 4 <= r.remaining else {
            throw r.error(
                .lengthBeyondEnd,
                "user id length \(idLength) and header CRC exceed the \(r.remaining) bytes left",
                at: r.pos - 4)
        }
        let idStart = r.pos
        r.pos += Int(idLength)
        let stored = try r.u32("header CRC")
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: r.buffer[..<(r.pos - 4)]))
        guard stored == computed else {
            throw FormatError(
                .checksumMismatch, offset: r.pos - 4,
                detail: "header: stored \(hex32(stored)), computed \(hex32(computed))")
        }
        guard flags == 0 else {
            throw FormatError(
                .unsupportedFeature, offset: 10,
                detail: "file flags \(hex16(flags)) are not defined in version \(version)")
        }
        let end = r.pos
        r.pos = idStart
        let userID = try r.utf8(Int(idLength), "user id")
        r.pos = end
        return FileHeader(
            formatVersion: version, flags: flags, userID: userID, revision: revision,
            createdAt: Timestamp(millisecondsSince1970: created),
            updatedAt: Timestamp(millisecondsSince1970: updated),
            sectionCount: Int(count), byteCount: end, fileID: fileID)
    }

    /// Reads one section's frame, checks its length, CRC and flags (for a file of `version`), and
    /// returns its body as stored.
    static func readSection(_ r: inout ByteReader, index: Int, of count: Int, version: UInt16)
        throws(FormatError)
        -> (
            SectionInfo, UnsafeRawBufferPointer
        )
    {
        let start = r.pos
        guard r.remaining >= 8 else {
            let detail =
                r.remaining == 0
                ? "the file ends after \(index) of \(count) sections"
                : "section \(index + 1) of \(count) has only \(r.remaining) of its 8 header bytes"
            throw r.error(.truncated, detail)
        }
        let tag = try r.u16("section tag")
        let flags = try r.u16("section flags")
        let length = try r.u32("section length")
        guard UInt64(length) + 4 <= UInt64(r.remaining) else {
            throw FormatError(
                .lengthBeyondEnd, offset: start + 4, sectionTag: tag,
                detail:
                    "section length \(length) plus its 4-byte CRC exceeds the \(r.remaining) bytes left in the file"
            )
        }
        let body = UnsafeRawBufferPointer(rebasing: r.buffer[r.pos..<(r.pos + Int(length))])
        r.pos += Int(length)
        let stored = try r.u32("section CRC")
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: r.buffer[start..<(r.pos - 4)]))
        guard stored == computed else {
            throw FormatError(
                .checksumMismatch, offset: r.pos - 4, sectionTag: tag,
                detail: "stored \(hex32(stored)), computed \(hex32(computed))")
        }
        guard tag != 0 else {
            throw FormatError(.malformed, offset: start, sectionTag: tag, detail: "tag 0 is reserved")
        }
        if SectionTag.isKnown(tag) {
            let defined = sectionFlags(version: version)
            guard flags & ~defined == 0, flags & (compressedFlag | zstdFlag) != compressedFlag | zstdFlag
            else {
                throw FormatError(
                    .unsupportedFeature, offset: start + 2, sectionTag: tag,
                    detail: flags & ~defined != 0
                        ? "section flags \(hex16(flags)) are not defined in version \(version)"
                        : "section flags \(hex16(flags)) mark both a zlib stream and a zstd frame")
            }
        } else if tag & SectionTag.criticalBit != 0 {
            throw FormatError(
                .unsupportedFeature, offset: start, sectionTag: tag,
                detail:
                    "critical section tag \(hex16(tag)) is not understood by this reader (format version \(version))"
            )
        }
        var rawLength = Int(length)
        if SectionTag.isKnown(tag), flags & (compressedFlag | zstdFlag) != 0 {
            guard length >= 4 else {
                throw FormatError(
                    .malformed, offset: start + 8, sectionTag: tag,
                    detail: "compressed section of \(length) bytes has no room for its raw length")
            }
            rawLength = Int(body.loadUnaligned(as: UInt32.self).littleEndian)
        }
        return (
            SectionInfo(
                tag: tag, flags: flags, offset: start, storedLength: Int(length), rawLength: rawLength,
                checksum: stored),
            body
        )
    }
}

/// `Array.withUnsafeBytes` with a typed error.
@inline(__always) func withBytes<R>(
    _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(FormatError) -> R
) throws(FormatError) -> R {
    let result = bytes.withUnsafeBytes { buffer in
        Result(catching: { () throws(FormatError) -> R in try body(buffer) })
    }
    return try result.get()
}

@usableFromInline package let hexDigits = Array("0123456789abcdef".utf8)

/// Lower-case hex of bytes, two digits each.
package func hexString<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for b in bytes {
        out.append(hexDigits[Int(b >> 4)])
        out.append(hexDigits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Lower-case hex of an unsigned integer, zero-padded to its full width (most significant digit
/// first).
package func hexString<T: FixedWidthInteger & UnsignedInteger>(_ value: T) -> String {
    let count = T.bitWidth / 4
    return String(unsafeUninitializedCapacity: count) { out in
        writeHex(value, into: out, at: 0)
        return count
    }
}

/// Writes the `T.bitWidth / 4` lower-case hex digits of `value` (most significant first) into
/// `out` from `start`; `out` must have room for them.
@inlinable package func writeHex<T: FixedWidthInteger & UnsignedInteger>(
    _ value: T, into out: UnsafeMutableBufferPointer<UInt8>, at start: Int
) {
    let count = T.bitWidth / 4
    var v = value
    var i = start + count
    while i > start {
        i -= 1
        out[i] = hexDigits[Int(truncatingIfNeeded: v & 0xF)]
        v >>= 4
    }
}

/// The value of one lower-case hex digit; nil for anything else.
@inlinable package func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
    default: return nil
    }
}

func hex(_ b: UInt8) -> String { hexString(b) }
func hex16(_ v: UInt16) -> String { "0x" + hexString(v) }
func hex32(_ v: UInt32) -> String { "0x" + hexString(v) }
