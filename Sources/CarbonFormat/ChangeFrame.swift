import CarbonModel

// CONTRACT (issue 9): the API the engine builds on. The format helper replaces the bodies; the
// signatures stay as written unless the engine is changed with them.

/// 128 random bits that name one snapshot (`fileID`) or one appended change (a frame's id) for
/// ever: two writes never share one. Versions on a volume are made of them (DESIGN.md: a version
/// must identify one write; a checksum does not).
public struct WriteID: Sendable, Hashable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh id from the system's random number generator.
    public static func random() -> WriteID {
        let (high, low) = RandomBits.pair()
        return WriteID(high: high, low: low)
    }

    /// The 16 bytes as stored in a file: `low` then `high`, each little-endian.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 16) { out, count in
            for i in 0..<8 {
                out[i] = UInt8(truncatingIfNeeded: low >> (8 * UInt64(i)))
                out[8 + i] = UInt8(truncatingIfNeeded: high >> (8 * UInt64(i)))
            }
            count = 16
        }
    }

    /// Reads 16 stored bytes (`low` then `high`, little-endian); nil unless there are exactly 16.
    @inlinable public init?<C: Collection<UInt8>>(bytes: C) {
        guard bytes.count == 16 else { return nil }
        var low: UInt64 = 0
        var high: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { low |= UInt64(b) << (8 * UInt64(i)) } else { high |= UInt64(b) << (8 * UInt64(i - 8)) }
        }
        self.init(high: high, low: low)
    }

    /// 32 lower-case hex digits of the stored bytes, in stored order.
    public var description: String {
        String(unsafeUninitializedCapacity: 32) { out in
            for k in 0..<16 {
                let b = UInt8(truncatingIfNeeded: (k < 8 ? low : high) >> (8 * UInt64(k % 8)))
                out[2 * k] = hexDigits[Int(b >> 4)]
                out[2 * k + 1] = hexDigits[Int(b & 0xF)]
            }
            return 32
        }
    }

    /// Parses `description`.
    public init?(hex: String) { self.init(hexDigits: hex.utf8) }

    /// Parses the UTF-8 of `description`: exactly 32 lower-case hex digits.
    @inlinable public init?<C: Collection<UInt8>>(hexDigits digits: C) {
        guard digits.count == 32 else { return nil }
        var low: UInt64 = 0
        var high: UInt64 = 0
        var index = digits.startIndex
        for i in 0..<16 {
            guard let h = hexValue(digits[index]) else { return nil }
            digits.formIndex(after: &index)
            guard let l = hexValue(digits[index]) else { return nil }
            digits.formIndex(after: &index)
            let b = UInt64(h << 4 | l)
            if i < 8 { low |= b << (8 * UInt64(i)) } else { high |= b << (8 * UInt64(i - 8)) }
        }
        self.init(high: high, low: low)
    }
}

/// Where the parts of a user file are: its snapshot, the change frames appended after it, and any
/// torn bytes of an append that did not finish (docs/FORMAT.md, version 2).
public struct FileLayout: Sendable, Hashable {
    /// 1 or 2.
    public var formatVersion: UInt16
    /// The snapshot's id (version 2); nil for version 1.
    public var fileID: WriteID?
    /// Bytes of the header and sections.
    public var snapshotLength: Int
    /// The end of the last valid change frame (`snapshotLength` when there is none). The record is
    /// the bytes before this offset; nothing after it is part of it.
    public var validLength: Int
    /// Valid change frames after the snapshot.
    public var frameCount: Int
    /// The id of the last valid frame, or `fileID` when there is none; nil for version 1. The next
    /// frame is chained to it.
    public var lastID: WriteID?
    /// Bytes after `validLength`: an append that was torn (or refused) and that readers ignore.
    public var ignoredLength: Int
    /// The payload bytes that a reader counts against `Limits.maxDecodedSize` (snapshot and frames).
    public var decodedSize: Int
    /// The items that a reader counts against `Limits.maxItemCount` (snapshot and frames).
    public var itemCount: Int
    /// Whether `itemCount` was counted. `scanLayout` does not decode payloads, so it cannot count
    /// items: its layouts have `itemCount` 0 and this false, and `encodeChange` refuses them (nil).
    /// Layouts from `decodeFile` and `encodeSnapshot` (and `appending` to them) have it true.
    public var itemCountIsKnown: Bool = true

    public init(
        formatVersion: UInt16, fileID: WriteID?, snapshotLength: Int, validLength: Int, frameCount: Int,
        lastID: WriteID?, ignoredLength: Int, decodedSize: Int, itemCount: Int
    ) {
        self.formatVersion = formatVersion
        self.fileID = fileID
        self.snapshotLength = snapshotLength
        self.validLength = validLength
        self.frameCount = frameCount
        self.lastID = lastID
        self.ignoredLength = ignoredLength
        self.decodedSize = decodedSize
        self.itemCount = itemCount
    }

    /// Bytes of valid change frames.
    public var tailLength: Int { validLength - snapshotLength }

    /// The layout once `frame` is appended at `validLength` (and any ignored bytes are cut).
    public func appending(_ frame: ChangeFrame) -> FileLayout {
        var next = self
        next.validLength += frame.bytes.count
        next.frameCount += 1
        next.lastID = frame.id
        next.ignoredLength = 0
        next.decodedSize += frame.decodedSize
        next.itemCount += frame.itemCount
        return next
    }

    /// Where a version-2 header keeps the file id: bytes `fileIDOffset ..< fileIDOffset + 16`.
    public static let fileIDOffset = 12
    /// The last bytes of every change frame: its id (16 bytes) and its CRC-32C (4 bytes).
    public static let frameTrailerLength = 20
}

/// One change frame, ready to append (docs/FORMAT.md, version 2).
public struct ChangeFrame: Sendable, Hashable {
    /// The frame as stored.
    public var bytes: [UInt8]
    /// Its id (stored in its trailer).
    public var id: WriteID
    /// What it adds to the reader's `maxDecodedSize` and `maxItemCount` counts.
    public var decodedSize: Int
    public var itemCount: Int

    public init(bytes: [UInt8], id: WriteID, decodedSize: Int, itemCount: Int) {
        self.bytes = bytes
        self.id = id
        self.decodedSize = decodedSize
        self.itemCount = itemCount
    }
}

extension RecordCodec {
    /// A version-2 snapshot of `record` (no frames) with the given id, or `RecordTooLargeError` if
    /// it is beyond `limits` (as `encodeChecked`).
    public func encodeSnapshot(_ record: UserRecord, fileID: WriteID) throws(RecordTooLargeError) -> (
        bytes: [UInt8], layout: FileLayout
    ) {
        let (bytes, decoded, items, version) = encodeMeasuring(record, version: 2, fileID: fileID)
        try checkLimits(userID: record.userID, size: bytes.count, decoded: decoded, items: items)
        let layout = FileLayout(
            formatVersion: version, fileID: fileID, snapshotLength: bytes.count, validLength: bytes.count,
            frameCount: 0, lastID: fileID, ignoredLength: 0, decodedSize: decoded, itemCount: items)
        return (bytes, layout)
    }

    /// Decodes a version-1 or version-2 file: the snapshot, then every valid frame in order; a torn
    /// tail is ignored (and reported in the layout). Damage anywhere else is a `FormatError`.
    public func decodeFile(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> (
        record: UserRecord, layout: FileLayout
    ) {
        try checkFileSize(buffer.count)
        let snapshot = try decodeSnapshot(buffer)
        let (header, end) = (snapshot.header, snapshot.end)
        var (record, decoded, items) = (snapshot.record, snapshot.decoded, snapshot.items)
        var layout = FileLayout(
            formatVersion: header.formatVersion, fileID: header.fileID, snapshotLength: end, validLength: end,
            frameCount: 0, lastID: header.fileID, ignoredLength: 0, decodedSize: decoded, itemCount: items)
        guard header.fileID != nil else { return (record, layout) }
        try applyFrames(buffer, from: end, to: &record, layout: &layout)
        return (record, layout)
    }

    /// Applies the frames of `buffer` from offset `start` on, chained to `layout.lastID`, in order,
    /// to `record`, and brings `layout` (which describes `record` and the bytes before `start`) up to
    /// date; the first frame that is incomplete, fails its CRC or does not chain starts the ignored
    /// tail. The one frame loop of `decodeFile` and `applyAppended`. Offsets in errors count from the
    /// start of `buffer`.
    private func applyFrames(
        _ buffer: UnsafeRawBufferPointer, from start: Int, to record: inout UserRecord,
        layout: inout FileLayout
    ) throws(FormatError) {
        guard var last = layout.lastID else { return }
        var (decoded, items) = (layout.decodedSize, layout.itemCount)
        var pos = start
        while pos < buffer.count {
            guard let head = Self.frameHead(buffer, at: pos, chainedTo: last).head else { break }
            try applyFrame(
                buffer, head, index: layout.frameCount, to: &record, decoded: &decoded, items: &items)
            pos += head.length
            last = head.id
            layout.frameCount += 1
        }
        layout.validLength += pos - start
        layout.lastID = last
        layout.ignoredLength = buffer.count - pos
        layout.decodedSize = decoded
        layout.itemCount = items
    }

    /// Whether the bytes after a file's valid content (`tail`) can be what a crash leaves of ONE
    /// append, followed by nothing or by zero bytes alone (the reserve the append was written
    /// into). The zero bytes at the end set aside, what is before them (the *non-zero part*) must
    /// be:
    /// - nothing (a reserve, or a file extended whose data never reached the disk);
    /// - fewer than 8 bytes that begin like a frame's marker;
    /// - one frame, marker first, whose length reaches beyond the end of the non-zero part (a prefix
    ///   of it), or exactly to it and that is chained to nothing or fails its CRC with a 512-byte
    ///   sector of the file within it that holds zero bytes alone (a sector that never reached the
    ///   disk);
    /// - or bytes that begin with a zero byte, or with the marker or a part of it followed by a zero
    ///   byte, or by a length that does not reach the end when the marker and length straddle two
    ///   sectors (a frame whose first sectors, or a sector within its marker and length, never
    ///   reached the disk while later ones did), in which no complete frame with a matching CRC
    ///   starts anywhere.
    /// Anything else, such as a damaged frame with a committed frame after it, or a last frame that
    /// reached the disk whole (every sector of it holds a non-zero byte) and fails its CRC, is damage
    /// that may be or hide acknowledged frames, and must not be cut.
    ///
    /// `offset` is where the tail starts in the file (`FileLayout.validLength`): sectors are counted
    /// from the start of the file.
    public static func isOneTornAppend(_ tail: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        // The zero bytes at the end are a reserve, or a part of the append that never reached the
        // disk: what counts is what comes before them.
        let count = nonZeroLength(tail)
        if count == 0 { return true }
        // How many of the first bytes are the marker's.
        var matched = 0
        while matched < 4, matched < count, tail[matched] == frameMarker[matched] { matched += 1 }
        if matched == count { return true }  // a part of the marker, then zeros
        if matched == 4, count >= 8 {
            let length = Int(tail.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
            // Its last bytes missing (zero, or past the end of the file): a prefix of the frame, as a
            // crash during its write leaves. (Also a frame whose CRC ends with a zero byte.)
            if length > count || (length == count && length < minFrameLength) { return true }
            // The frame's last byte ends the non-zero part: torn only if a sector of it never reached
            // the disk. Written whole, a frame that fails its CRC was damaged afterwards, and may
            // have been acknowledged (a crash never leaves one: an acknowledged frame was synced
            // whole). One that passes its CRC is chained to nothing: torn.
            if length == count {
                let stored = tail.loadUnaligned(fromByteOffset: length - 4, as: UInt32.self).littleEndian
                let crcMatches =
                    CRC32C.checksum(UnsafeRawBufferPointer(rebasing: tail[0..<(length - 4)])) == stored
                return crcMatches || hasZeroSector(tail, count: length, at: offset)
            }
            // Non-zero bytes after the end that `length` gives. When the marker and the length lie
            // in one sector (which reached the disk: the marker is there), the length is the one
            // written, and what follows the frame is not what a crash leaves of one append: damage,
            // such as a damaged length. (Across two sectors, the length's later bytes may be zeros
            // that a lost sector left: the case below.)
            if offset % sectorSize <= sectorSize - 8 { return false }
        }
        // The start of the append missing, or cut within its marker and length: these are what is
        // left of the one append that was torn if no complete frame starts in them. (Acknowledged
        // frames are written one after the other from the valid end, each starting with the marker
        // and checked by its CRC.)
        guard tail[0] == 0 || matched == 4 || tail[matched] == 0 else { return false }
        return !containsCompleteFrame(tail)
    }

    /// The size of the sectors whose writes may be lost one by one in a crash: 512 bytes, the
    /// smallest that disks write atomically (a disk with larger sectors loses them whole, and so
    /// whole 512-byte runs too).
    public static let sectorSize = 512

    /// Whether the first `count` bytes of `bytes`, which start at file offset `offset`, hold a run
    /// that is a whole sector of the file, or its part within them, with zero bytes alone.
    static func hasZeroSector(_ bytes: UnsafeRawBufferPointer, count: Int, at offset: Int) -> Bool {
        var start = 0
        while start < count {
            let end = min(count, start + sectorSize - (offset + start) % sectorSize)
            if !bytes[start..<end].contains(where: { $0 != 0 }) { return true }
            start = end
        }
        return false
    }

    /// Whether a complete frame whose CRC matches (chained to anything) starts anywhere in `bytes`.
    /// The bytes checksummed are bounded (twice the bytes given): a tail that would take more, full
    /// of marker-like bytes, counts as holding one, which never cuts anything.
    static func containsCompleteFrame(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var budget = 2 * bytes.count
        var pos = 0
        while pos + minFrameLength <= bytes.count {
            if bytes[pos] == frameMarker[0], bytes[pos + 1] == frameMarker[1],
                bytes[pos + 2] == frameMarker[2],
                bytes[pos + 3] == frameMarker[3]
            {
                let length = Int(bytes.loadUnaligned(fromByteOffset: pos + 4, as: UInt32.self).littleEndian)
                if length >= minFrameLength, length <= bytes.count - pos {
                    budget -= length
                    if budget < 0 { return true }
                    let stored = bytes.loadUnaligned(fromByteOffset: pos + length - 4, as: UInt32.self)
                        .littleEndian
                    let body = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + length - 4)])
                    if CRC32C.checksum(body) == stored { return true }
                }
            }
            pos += 1
        }
        return false
    }

    /// What the bytes after a file's valid content (`tail`) are: nothing, zero bytes alone (a
    /// reserve), what a crash leaves of one append (`isOneTornAppend`: the next update cuts it), or
    /// damage that may hide acknowledged frames (docs/FORMAT.md, 13.4).
    /// `offset` is where the tail starts in the file (`FileLayout.validLength`).
    public static func classifyTail(_ tail: UnsafeRawBufferPointer, at offset: Int) -> IgnoredTail {
        if tail.isEmpty { return .none }
        if isReserve(tail) { return .reserve }
        return isOneTornAppend(tail, at: offset) ? .tornAppend : .damaged
    }

    /// Whether the bytes after a file's valid content are zero bytes alone (a reserve, which appends
    /// on a volume write into, or nothing): no content, nothing torn.
    public static func isReserve(_ tail: UnsafeRawBufferPointer) -> Bool { nonZeroLength(tail) == 0 }

    /// The length of `bytes` without the zero bytes at its end (0 when every byte is zero). A
    /// reserve is a few KiB of zeros, checked at every version check: compared eight bytes at a time.
    public static func nonZeroLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        var end = bytes.count
        while end >= 8, bytes.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
        while end > 0, bytes[end - 1] == 0 { end -= 1 }
        return end
    }

    /// How far the valid frames chained to `previous` at the start of `bytes` reach, and the id of
    /// the last of them (CRCs and chain checked, parts not decoded); `length` 0 when there is none.
    public func framesEnd(_ bytes: UnsafeRawBufferPointer, chainedTo previous: WriteID) -> (
        length: Int, lastID: WriteID
    ) {
        var pos = 0
        var last = previous
        while pos < bytes.count, let head = Self.frameHead(bytes, at: pos, chainedTo: last).head {
            pos += head.length
            last = head.id
        }
        return (pos, last)
    }

    /// Brings a decoded record up to date with the frames appended since: `tail` is the file's
    /// bytes from `layout.validLength` on, `record` the record that `layout` describes (from
    /// `decodeFile`, `encodeSnapshot` or an earlier call). The frames chained to `layout.lastID` at
    /// the start of `tail` are applied in order, exactly as `decodeFile` applies them, and a torn
    /// end is ignored as it does; so the result equals `decodeFile` of the whole file. Offsets in
    /// errors count from the start of `tail`.
    public func applyAppended(_ tail: UnsafeRawBufferPointer, to record: UserRecord, layout: FileLayout)
        throws(FormatError) -> (record: UserRecord, layout: FileLayout)
    {
        guard layout.formatVersion >= 2, let lastID = layout.lastID, layout.itemCountIsKnown else {
            throw FormatError(
                .unsupportedFeature, offset: 0,
                detail: "frames can only be applied to a decoded version-2 record; decode the whole file")
        }
        try checkFileSize(layout.validLength + tail.count)
        var (record, layout) = (record, layout)
        layout.lastID = lastID
        try applyFrames(tail, from: 0, to: &record, layout: &layout)
        return (record, layout)
    }

    public func decodeFile(_ bytes: [UInt8]) throws(FormatError) -> (record: UserRecord, layout: FileLayout) {
        try withBytes(bytes) { (buffer) throws(FormatError) -> (record: UserRecord, layout: FileLayout) in
            try decodeFile(buffer)
        }
    }

    /// The layout alone: the header's CRC, the sections' lengths (not their CRCs or payloads), and
    /// every frame's length, CRC and chain (and its parts' lengths). Cheap: used for a file's version
    /// on a volume. Items are not counted (`itemCountIsKnown` is false); `decodedSize` is exact.
    public func scanLayout(_ buffer: UnsafeRawBufferPointer) throws(FormatError) -> FileLayout {
        try checkFileSize(buffer.count)
        var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
        let header = try Self.readHeader(&r)
        var decoded = 0
        for index in 0..<header.sectionCount {
            let start = r.pos
            guard r.remaining >= 8 else {
                throw r.error(
                    .truncated, "the file ends in or before section \(index + 1) of \(header.sectionCount)")
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
            if SectionTag.isKnown(tag), flags & (Self.compressedFlag | Self.zstdFlag) != 0, length >= 4 {
                decoded += Int(buffer.loadUnaligned(fromByteOffset: r.pos, as: UInt32.self).littleEndian)
            } else {
                decoded += Int(length)
            }
            r.pos += Int(length) + 4
        }
        var layout = FileLayout(
            formatVersion: header.formatVersion, fileID: header.fileID, snapshotLength: r.pos,
            validLength: r.pos, frameCount: 0, lastID: header.fileID, ignoredLength: 0, decodedSize: decoded,
            itemCount: 0)
        layout.itemCountIsKnown = false
        guard let fileID = header.fileID else {
            guard r.atEnd else {
                throw r.error(
                    .trailingBytes, "\(r.remaining) bytes after the last of \(header.sectionCount) sections")
            }
            return layout
        }
        var pos = r.pos
        var last = fileID
        while pos < buffer.count {
            guard let head = Self.frameHead(buffer, at: pos, chainedTo: last).head else { break }
            for part in try Self.frameParts(buffer, head, index: layout.frameCount) {
                layout.decodedSize += part.length
            }
            pos += head.length
            last = head.id
            layout.frameCount += 1
        }
        layout.validLength = pos
        layout.lastID = last
        layout.ignoredLength = buffer.count - pos
        return layout
    }

    /// The change frame that turns `before` into `after` exactly, chained to `layout.lastID`; nil
    /// when no frame can say it (the user id or the preserved sections changed, the revision did
    /// not increase, the file is version 1, the layout's items were not counted) or when appending
    /// it would take the file beyond `limits` (then write a snapshot).
    public func encodeChange(
        from before: UserRecord, to after: UserRecord, appendingTo layout: FileLayout, id: WriteID
    ) -> ChangeFrame? {
        guard layout.formatVersion >= 2, let previous = layout.lastID, layout.itemCountIsKnown,
            after.revision > before.revision, after.userID.isByteEqual(to: before.userID),
            after.preservedSections == before.preservedSections
        else { return nil }
        guard let frame = Self.frame(from: before, to: after, previous: previous, id: id) else { return nil }
        guard layout.validLength + frame.bytes.count <= limits.maxFileSize,
            layout.decodedSize + frame.decodedSize <= limits.maxDecodedSize,
            layout.itemCount + frame.itemCount <= limits.maxItemCount
        else { return nil }
        return frame
    }

    /// Whether `bytes` begin with a complete, valid frame (length, CRC) chained to `previous`: the
    /// append fence's test of whether bytes after the expected end are someone's committed append
    /// (a conflict) or a torn one (to be cut).
    public func startsWithFrame(_ bytes: UnsafeRawBufferPointer, chainedTo previous: WriteID) -> Bool {
        Self.frameHead(bytes, at: 0, chainedTo: previous).head != nil
    }
}

/// What follows a file's valid content (`RecordCodec.classifyTail`).
public enum IgnoredTail: Sendable, Equatable {
    /// The file ends where its content does.
    case none
    /// Zero bytes alone: room reserved for the next appends.
    case reserve
    /// What a crash leaves of one append (never acknowledged: an acknowledged frame was synced
    /// whole): the next update cuts it.
    case tornAppend
    /// Anything else, such as a damaged frame with committed frames after it: it may hide
    /// acknowledged changes, and the engine refuses to write over it.
    case damaged

    /// Whether the tail may hide acknowledged changes.
    public var isDamage: Bool { self == .damaged }

    /// What damage is, in the words every message about it uses (after "… bytes that are").
    public static let damageExplanation =
        "not one torn append: a damaged change frame, which may be or hide acknowledged changes"
}
