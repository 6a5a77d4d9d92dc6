import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Change frames of format version 2 (docs/FORMAT.md §13): their head, parts, trailer and chain.

/// The fixed fields of one change frame, read after its length, CRC and chain were checked.
struct FrameHead {
    /// File offset of the frame's first byte (its marker).
    var offset: Int
    /// Bytes of the whole frame, marker through CRC.
    var length: Int
    var previousID: WriteID
    var id: WriteID
    var revision: UInt64
    var createdAt: Int64
    var updatedAt: Int64
    var checksum: UInt32
    /// File offsets of the parts: `partsStart ..< partsEnd`.
    var partsStart: Int { offset + RecordCodec.frameHeadLength }
    var partsEnd: Int { offset + length - FileLayout.frameTrailerLength }
}

/// One part of a frame: its tag and where its body is.
public struct FramePartInfo: Sendable, Hashable {
    public var tag: UInt16
    /// File offset of the part's body (after its 6-byte tag and length).
    public var offset: Int
    /// Bytes of the body.
    public var length: Int

    public var name: String { SectionTag.name(of: tag) }
}

/// Where one valid change frame sits in a file, and what it says (see `RecordCodec.inspect`).
public struct FrameInfo: Sendable, Hashable {
    /// File offset of the frame's first byte.
    public var offset: Int
    /// Bytes of the frame, marker through CRC.
    public var length: Int
    public var id: WriteID
    public var previousID: WriteID
    public var revision: UInt64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var parts: [FramePartInfo]
    public var checksum: UInt32
}

/// What a file is made of, without decoding payloads: header, sections (CRCs checked), valid
/// change frames (length, CRC and chain checked), and the ignored tail.
public struct FileReport: Sendable, Hashable {
    public var header: FileHeader
    public var sections: [SectionInfo]
    public var frames: [FrameInfo]
    /// Items are not counted (`itemCountIsKnown` false); `decodedSize` is exact.
    public var layout: FileLayout
    /// Why the bytes after the last valid frame are not one (nil when there are none).
    public var ignoredReason: String?
}

extension RecordCodec {
    /// The first 4 bytes of every change frame: `89 43 46 52` ("\x89CFR").
    public static let frameMarker: [UInt8] = [0x89, 0x43, 0x46, 0x52]
    /// Bytes of a frame before its parts: marker 4, length 4, previousID 16, revision 8,
    /// createdAt 8, updatedAt 8.
    public static let frameHeadLength = 48
    /// The smallest frame: head and trailer, no parts.
    public static let minFrameLength = frameHeadLength + FileLayout.frameTrailerLength
    /// Bytes of a part's own header: tag u16, length u32.
    static let partHeaderLength = 6

    /// Whether the bytes at `pos` are a complete frame whose CRC matches and whose previousID is
    /// `previous`; if not, why (the reason is for tools; readers only need to know it is not).
    static func frameHead(_ buffer: UnsafeRawBufferPointer, at pos: Int, chainedTo previous: WriteID)
        -> (head: FrameHead?, reason: String)
    {
        let left = buffer.count - pos
        guard left >= 8 else {
            return (nil, "\(left) bytes, too short for a frame's marker and length")
        }
        for i in 0..<4 where buffer[pos + i] != frameMarker[i] {
            return (nil, "no frame marker (89 43 46 52) at offset \(pos)")
        }
        let length = Int(buffer.loadUnaligned(fromByteOffset: pos + 4, as: UInt32.self).littleEndian)
        guard length >= minFrameLength else {
            return (nil, "frame length \(length) is below the smallest frame (\(minFrameLength) bytes)")
        }
        guard length <= left else {
            return (nil, "incomplete frame: its length is \(length) bytes, \(left) are left in the file")
        }
        let stored = buffer.loadUnaligned(fromByteOffset: pos + length - 4, as: UInt32.self).littleEndian
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[pos..<(pos + length - 4)]))
        guard stored == computed else {
            return (nil, "frame CRC-32C mismatch: stored \(hex32(stored)), computed \(hex32(computed))")
        }
        func u64(_ at: Int) -> UInt64 {
            buffer.loadUnaligned(fromByteOffset: pos + at, as: UInt64.self).littleEndian
        }
        let previousID = WriteID(high: u64(16), low: u64(8))
        guard previousID == previous else {
            return (nil, "the frame follows \(previousID), not \(previous) (a frame of another chain)")
        }
        let head = FrameHead(
            offset: pos, length: length, previousID: previousID,
            id: WriteID(high: u64(length - 12), low: u64(length - 20)), revision: u64(24),
            createdAt: Int64(bitPattern: u64(32)), updatedAt: Int64(bitPattern: u64(40)), checksum: stored)
        return (head, "")
    }

    /// The parts of a valid frame: tags known and ascending, lengths within the frame.
    static func frameParts(_ buffer: UnsafeRawBufferPointer, _ head: FrameHead, index: Int)
        throws(FormatError)
        -> [FramePartInfo]
    {
        var parts: [FramePartInfo] = []
        var pos = head.partsStart
        var lastTag: UInt16 = 0
        while pos < head.partsEnd {
            guard head.partsEnd - pos >= partHeaderLength else {
                throw FormatError(
                    .truncated, offset: pos,
                    detail: "frame \(index + 1): \(head.partsEnd - pos) bytes left for a part's 6-byte header"
                )
            }
            let tag = UInt16(buffer[pos]) | UInt16(buffer[pos + 1]) << 8
            let length = Int(buffer.loadUnaligned(fromByteOffset: pos + 2, as: UInt32.self).littleEndian)
            guard SectionTag.isKnown(tag) else {
                throw FormatError(
                    .malformed, offset: pos, detail: "frame \(index + 1): unknown part tag \(hex16(tag))")
            }
            guard tag > lastTag else {
                throw FormatError(
                    .malformed, offset: pos, sectionTag: tag,
                    detail:
                        "frame \(index + 1): part tag \(tag) after tag \(lastTag) (tags must ascend, each at most once)"
                )
            }
            let bodyStart = pos + partHeaderLength
            guard length <= head.partsEnd - bodyStart else {
                throw FormatError(
                    .lengthBeyondEnd, offset: pos + 2, sectionTag: tag,
                    detail:
                        "frame \(index + 1): part length \(length) exceeds the \(head.partsEnd - bodyStart) bytes left before the frame's trailer"
                )
            }
            parts.append(FramePartInfo(tag: tag, offset: bodyStart, length: length))
            lastTag = tag
            pos = bodyStart + length
        }
        return parts
    }

    /// Decodes the parts of a valid frame and applies them, with its header fields, to `record`.
    /// Counts its parts against `maxDecodedSize` and its items against `maxItemCount`.
    func applyFrame(
        _ buffer: UnsafeRawBufferPointer, _ head: FrameHead, index: Int, to record: inout UserRecord,
        decoded: inout Int, items: inout Int
    ) throws(FormatError) {
        guard head.revision > record.revision else {
            throw FormatError(
                .malformed, offset: head.offset + 24,
                detail:
                    "frame \(index + 1): revision \(head.revision) does not follow revision \(record.revision)"
            )
        }
        for part in try Self.frameParts(buffer, head, index: index) {
            decoded += part.length
            guard decoded <= limits.maxDecodedSize else {
                throw FormatError(
                    .limitExceeded, offset: part.offset, sectionTag: part.tag,
                    detail:
                        "frame \(index + 1): the payloads add up to \(decoded) bytes, above the limit of \(limits.maxDecodedSize) bytes (RecordCodec.Limits.maxDecodedSize)"
                )
            }
            var r = ByteReader(
                UnsafeRawBufferPointer(rebasing: buffer[part.offset..<(part.offset + part.length)]),
                context: ReaderContext(fileOffset: part.offset, tag: part.tag), items: items,
                maxItems: limits.maxItemCount)
            switch part.tag {
            case SectionTag.transactions:
                try Self.applySplice(&record.transactions, &r, index: index) { (r) throws(FormatError) in
                    try TransactionsSection.decode(&r)
                }
            case SectionTag.responses:
                try Self.applySplice(&record.responses, &r, index: index) { (r) throws(FormatError) in
                    try ResponsesSection.decode(&r)
                }
            case SectionTag.preferences:
                try Self.applyPreferences(&record.preferences, &r, index: index)
            case SectionTag.footprints:
                try Self.applySplice(&record.footprints, &r, index: index) { (r) throws(FormatError) in
                    try FootprintsSection.decode(&r)
                }
            default:
                try Self.applySplice(&record.savings, &r, index: index) { (r) throws(FormatError) in
                    try SavingsSection.decode(&r)
                }
            }
            guard r.atEnd else {
                throw r.error(
                    .trailingBytes, "frame \(index + 1): \(r.remaining) bytes after the part's content")
            }
            items = r.items
        }
        record.revision = head.revision
        record.createdAt = Timestamp(millisecondsSince1970: head.createdAt)
        record.updatedAt = Timestamp(millisecondsSince1970: head.updatedAt)
    }

    private static func applySplice<T>(
        _ array: inout ItemList<T>, _ r: inout ByteReader, index: Int,
        rows: (inout ByteReader) throws(FormatError) -> [T]
    ) throws(FormatError) {
        let start = try r.int(max: array.count, "frame \(index + 1): splice start")
        let removeCount = try r.int(max: array.count - start, "frame \(index + 1): splice remove count")
        let inserted = try rows(&r)
        array.replaceSubrange(start..<(start + removeCount), with: inserted)
    }

    private static func applyPreferences(
        _ preferences: inout ExactDictionary<Preference>, _ r: inout ByteReader, index: Int
    ) throws(FormatError) {
        let removed = try r.count("frame \(index + 1): removed preference count")
        for _ in 0..<removed {
            let start = r.pos
            let key = try r.string("removed preference key")
            guard preferences.removeValue(forKey: key) != nil else {
                throw r.error(
                    .malformed, "frame \(index + 1): removes preference '\(key)', which is not set", at: start
                )
            }
        }
        for (key, value) in try PreferencesSection.decode(&r) {
            preferences.updateValue(value, forKey: key)
        }
    }

    // MARK: Writing frames

    /// The frame turning `before` into `after` (same user id and preserved sections), or nil if it
    /// would be longer than a u32 length can say.
    static func frame(from before: UserRecord, to after: UserRecord, previous: WriteID, id: WriteID)
        -> ChangeFrame?
    {
        var w = ByteWriter(capacity: 512)
        w.bytes.append(contentsOf: frameMarker)
        w.u32(0)
        w.u64(previous.low)
        w.u64(previous.high)
        w.u64(after.revision)
        w.u64(UInt64(bitPattern: after.createdAt.millisecondsSince1970))
        w.u64(UInt64(bitPattern: after.updatedAt.millisecondsSince1970))
        var decoded = 0
        func part(_ tag: UInt16, _ body: (inout ByteWriter) -> Void) {
            let start = w.count
            w.u16(tag)
            w.u32(0)
            body(&w)
            let length = w.count - start - partHeaderLength
            w.patchU32(UInt32(truncatingIfNeeded: length), at: start + 2)
            decoded += length
        }
        if let s = splice(before.transactions, after.transactions) {
            part(SectionTag.transactions) {
                $0.varint(s.start)
                $0.varint(s.removeCount)
                TransactionsSection.encode(Array(s.rows), into: &$0)
            }
        }
        if let s = splice(before.responses, after.responses) {
            part(SectionTag.responses) {
                $0.varint(s.start)
                $0.varint(s.removeCount)
                ResponsesSection.encode(Array(s.rows), into: &$0)
            }
        }
        if let change = preferenceChange(before.preferences, after.preferences) {
            part(SectionTag.preferences) {
                $0.itemCount(change.removed.count)
                for key in change.removed { $0.string(key) }
                PreferencesSection.encode(change.upserted, into: &$0)
            }
        }
        if let s = splice(before.footprints, after.footprints) {
            part(SectionTag.footprints) {
                $0.varint(s.start)
                $0.varint(s.removeCount)
                FootprintsSection.encode(Array(s.rows), into: &$0)
            }
        }
        if let s = splice(before.savings, after.savings) {
            part(SectionTag.savings) {
                $0.varint(s.start)
                $0.varint(s.removeCount)
                SavingsSection.encode(Array(s.rows), into: &$0)
            }
        }
        w.u64(id.low)
        w.u64(id.high)
        let length = w.count + 4
        guard length <= Int(UInt32.max) else { return nil }
        w.patchU32(UInt32(length), at: 4)
        let crc = w.bytes.withUnsafeBytes { CRC32C.checksum($0) }
        w.u32(crc)
        return ChangeFrame(bytes: w.bytes, id: id, decodedSize: decoded, itemCount: w.items)
    }

    /// The smallest single splice turning `a` into `b` (their common prefix and suffix kept), or
    /// nil when they are equal.
    ///
    /// The chunks the two lists share (a record and its changed copy share every chunk the change
    /// did not touch) are skipped without reading them; only the elements between them are
    /// compared, so the cost is that of the change, not of the list.
    static func splice<T: FrameRow>(_ a: ItemList<T>, _ b: ItemList<T>) -> (
        start: Int, removeCount: Int, rows: ArraySlice<T>
    )? {
        let shared = a.sharedEnds(with: b)
        // Read in place (most changes lie within one chunk of each list); only the rows of the
        // splice are copied out (`rows` starts at index 0).
        return a.withElements(in: shared.prefix..<(a.count - shared.suffix)) { pa in
            b.withElements(in: shared.prefix..<(b.count - shared.suffix)) { pb in
                guard let s = splice(pa, pb) else { return nil }
                return (shared.prefix + s.start, s.removeCount, ArraySlice(pb[s.rows]))
            }
        }
    }

    /// `splice` on arrays.
    static func splice<T: FrameRow>(_ a: [T], _ b: [T]) -> (
        start: Int, removeCount: Int, rows: ArraySlice<T>
    )? {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                splice(pa, pb).map { ($0.start, $0.removeCount, b[$0.rows]) }
            }
        }
    }

    /// `splice` on the elements in two buffers: the rows of `b` that replace `removeCount` rows of
    /// `a` at `start`, as positions of `b`.
    static func splice<T: FrameRow>(_ a: UnsafeBufferPointer<T>, _ b: UnsafeBufferPointer<T>) -> (
        start: Int, removeCount: Int, rows: Range<Int>
    )? {
        let n = min(a.count, b.count)
        let prefix = commonPrefix(a, b, limit: n)
        if prefix == a.count && prefix == b.count { return nil }
        let suffix = commonSuffix(a, b, limit: n - prefix)
        return (prefix, a.count - prefix - suffix, prefix..<(b.count - suffix))
    }

    /// How many leading elements of `a` and `b` (at most `limit`) are equal.
    ///
    /// Elements are compared `RowMask.chunk` at a time by their bytes, padding excluded: elements
    /// whose bytes are identical (the same string and dictionary storage, the same values) are
    /// equal, which is the common case of a record copied and changed in a few places, and is
    /// decided at the speed of reading memory; elements whose bytes differ are compared with `==`.
    static func commonPrefix<T: FrameRow>(
        _ pa: UnsafeBufferPointer<T>, _ pb: UnsafeBufferPointer<T>, limit: Int
    )
        -> Int
    {
        guard limit > 0, let baseA = pa.baseAddress, let baseB = pb.baseAddress else { return 0 }
        if baseA == baseB { return limit }
        let mask = T.rowMask
        var i = 0
        while i < limit {
            let k = min(RowMask.chunk, limit - i)
            if mask.identical(baseA + i, baseB + i, rows: k) {
                i += k
                continue
            }
            let end = i + k
            while i < end {
                if !mask.identical(baseA + i, baseB + i, rows: 1), pa[i] != pb[i] { return i }
                i += 1
            }
        }
        return limit
    }

    /// How many trailing elements of `a` and `b` (at most `limit`) are equal.
    static func commonSuffix<T: FrameRow>(
        _ pa: UnsafeBufferPointer<T>, _ pb: UnsafeBufferPointer<T>, limit: Int
    )
        -> Int
    {
        guard limit > 0, let baseA = pa.baseAddress, let baseB = pb.baseAddress else { return 0 }
        let mask = T.rowMask
        let endA = baseA + pa.count
        let endB = baseB + pb.count
        var i = 0
        while i < limit {
            let k = min(RowMask.chunk, limit - i)
            if mask.identical(endA - i - k, endB - i - k, rows: k) {
                i += k
                continue
            }
            let end = i + k
            while i < end {
                let x = endA - i - 1
                let y = endB - i - 1
                if !mask.identical(x, y, rows: 1), x.pointee != y.pointee { return i }
                i += 1
            }
        }
        return limit
    }

    /// The keys removed (UTF-8 order) and the entries added or changed; nil when nothing changed.
    static func preferenceChange(_ a: ExactDictionary<Preference>, _ b: ExactDictionary<Preference>) -> (
        removed: [String], upserted: ExactDictionary<Preference>
    )? {
        let same = withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
        if same { return nil }
        var removed: [String] = []
        for (key, _) in a where b[key] == nil { removed.append(key) }
        var upserted = ExactDictionary<Preference>()
        for (key, value) in b where a[key] != value { upserted.updateValue(value, forKey: key) }
        if removed.isEmpty && upserted.isEmpty { return nil }
        removed.sort(by: utf8Less)
        return (removed, upserted)
    }

    // MARK: Inspecting

    /// What a file is made of (header, sections with their CRCs checked, frames with their length,
    /// CRC, chain and part structure checked, the ignored tail), without decoding payloads.
    public static func inspect(_ bytes: [UInt8]) throws(FormatError) -> FileReport {
        try withBytes(bytes) { (buffer) throws(FormatError) -> FileReport in
            let (header, sections, end) = try snapshotLayout(buffer)
            var decoded = sections.reduce(0) { $0 + $1.rawLength }
            var layout = FileLayout(
                formatVersion: header.formatVersion, fileID: header.fileID, snapshotLength: end,
                validLength: end, frameCount: 0, lastID: header.fileID, ignoredLength: 0,
                decodedSize: decoded,
                itemCount: 0)
            layout.itemCountIsKnown = false
            var frames: [FrameInfo] = []
            var reason: String?
            if let fileID = header.fileID {
                var pos = end
                var last = fileID
                while pos < buffer.count {
                    let (head, why) = frameHead(buffer, at: pos, chainedTo: last)
                    guard let head else {
                        reason = why
                        break
                    }
                    let parts = try frameParts(buffer, head, index: frames.count)
                    decoded += parts.reduce(0) { $0 + $1.length }
                    frames.append(
                        FrameInfo(
                            offset: pos, length: head.length, id: head.id, previousID: head.previousID,
                            revision: head.revision,
                            createdAt: Timestamp(millisecondsSince1970: head.createdAt),
                            updatedAt: Timestamp(millisecondsSince1970: head.updatedAt), parts: parts,
                            checksum: head.checksum))
                    pos += head.length
                    last = head.id
                }
                layout.validLength = pos
                layout.frameCount = frames.count
                layout.lastID = last
                layout.ignoredLength = buffer.count - pos
                layout.decodedSize = decoded
            }
            return FileReport(
                header: header, sections: sections, frames: frames, layout: layout, ignoredReason: reason)
        }
    }
}

/// The rows of a splice part, with the bytes of their values that hold data (not padding), so that
/// two rows can be found identical by their bytes.
protocol FrameRow: Equatable {
    static var rowMask: RowMask { get }
}

/// Which bytes of a row type hold data, repeated for `chunk` rows, as 64-bit words.
struct RowMask: Sendable {
    /// Rows compared at once.
    static let chunk = 32
    let words: [UInt64]
    /// Words per row.
    let rowWords: Int
    let stride: Int

    /// Whether only the fields' bytes are compared (false: every byte, padding included).
    let excludesPadding: Bool

    /// `fields`: the offset and size of each stored property of `T`. If their number is not the
    /// number of stored properties of `sample` (a field was added to the model and not here),
    /// every byte is compared: slower (padding may differ, then rows are compared with `==`),
    /// never wrong.
    init<T>(_ sample: T, fields: [(offset: Int?, size: Int)]) {
        stride = MemoryLayout<T>.stride
        var bytes = [UInt8](repeating: 0, count: stride)
        let complete = Mirror(reflecting: sample).children.count == fields.count
        excludesPadding = complete && fields.allSatisfy { $0.offset != nil }
        if !complete { bytes = [UInt8](repeating: 0xFF, count: stride) }
        for field in fields where complete {
            guard let offset = field.offset else {
                // A field without a known offset: every byte counts (then padding may differ and the
                // rows fall back to `==`, which is slower but still right).
                bytes = [UInt8](repeating: 0xFF, count: stride)
                break
            }
            for b in offset..<(offset + field.size) { bytes[b] = 0xFF }
        }
        let wordCount = (stride + 7) / 8
        var row = [UInt64](repeating: 0, count: wordCount)
        for (i, b) in bytes.enumerated() where b != 0 { row[i / 8] |= 0xFF << (8 * UInt64(i % 8)) }
        rowWords = wordCount
        // Rows whose stride is not a multiple of 8 are compared one at a time.
        words = stride % 8 == 0 ? Array((0..<Self.chunk).map { _ in row }.joined()) : row
    }

    /// Whether `rows` rows at `a` and `b` have the same bytes wherever they hold data.
    @inline(__always) func identical<T>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, rows: Int) -> Bool {
        if stride % 8 != 0 {
            return memcmp(a, b, rows * stride) == 0
        }
        let n = rows * rowWords
        let x = UnsafeRawPointer(a)
        let y = UnsafeRawPointer(b)
        return words.withUnsafeBufferPointer { m in
            var acc: UInt64 = 0
            for w in 0..<n {
                acc |=
                    (x.load(fromByteOffset: w &* 8, as: UInt64.self)
                        ^ y.load(fromByteOffset: w &* 8, as: UInt64.self))
                    & m[w]
            }
            return acc == 0
        }
    }
}

extension Transaction: FrameRow {
    static let rowMask = RowMask(
        Transaction(
            id: "", time: Timestamp(millisecondsSince1970: 0),
            amount: Money(minorUnits: 0, currency: CurrencyCode("EUR")!)),
        fields: [
            (MemoryLayout<Transaction>.offset(of: \.id), MemoryLayout<String>.size),
            (MemoryLayout<Transaction>.offset(of: \.time), MemoryLayout<Timestamp>.size),
            (MemoryLayout<Transaction>.offset(of: \.amount), MemoryLayout<Money>.size),
            (MemoryLayout<Transaction>.offset(of: \.merchant), MemoryLayout<String?>.size),
            (MemoryLayout<Transaction>.offset(of: \.mcc), MemoryLayout<UInt16?>.size),
            (MemoryLayout<Transaction>.offset(of: \.category), MemoryLayout<String?>.size),
            (MemoryLayout<Transaction>.offset(of: \.description), MemoryLayout<String?>.size),
            (MemoryLayout<Transaction>.offset(of: \.accountID), MemoryLayout<String?>.size),
            (MemoryLayout<Transaction>.offset(of: \.metadata), MemoryLayout<ExactDictionary<String>>.size),
        ])
}

extension QuestionResponse: FrameRow {
    static let rowMask = RowMask(
        QuestionResponse(
            questionID: "", answer: .boolean(true), answeredAt: Timestamp(millisecondsSince1970: 0)),
        fields: [
            (MemoryLayout<QuestionResponse>.offset(of: \.questionID), MemoryLayout<String>.size),
            (MemoryLayout<QuestionResponse>.offset(of: \.answer), MemoryLayout<Answer>.size),
            (MemoryLayout<QuestionResponse>.offset(of: \.answeredAt), MemoryLayout<Timestamp>.size),
        ])
}

extension Footprint: FrameRow {
    static let rowMask = RowMask(
        Footprint(
            id: "", co2e: CO2e(milligrams: 0), category: "", methodology: "",
            calculatedAt: Timestamp(millisecondsSince1970: 0)),
        fields: [
            (MemoryLayout<Footprint>.offset(of: \.id), MemoryLayout<String>.size),
            (MemoryLayout<Footprint>.offset(of: \.transactionID), MemoryLayout<String?>.size),
            (MemoryLayout<Footprint>.offset(of: \.period), MemoryLayout<Period?>.size),
            (MemoryLayout<Footprint>.offset(of: \.co2e), MemoryLayout<CO2e>.size),
            (MemoryLayout<Footprint>.offset(of: \.category), MemoryLayout<String>.size),
            (MemoryLayout<Footprint>.offset(of: \.methodology), MemoryLayout<String>.size),
            (MemoryLayout<Footprint>.offset(of: \.calculatedAt), MemoryLayout<Timestamp>.size),
        ])
}

extension Saving: FrameRow {
    static let rowMask = RowMask(
        Saving(
            id: "", actionID: "", co2e: CO2e(milligrams: 0),
            period: Period(
                start: Timestamp(millisecondsSince1970: 0), end: Timestamp(millisecondsSince1970: 0)),
            recordedAt: Timestamp(millisecondsSince1970: 0)),
        fields: [
            (MemoryLayout<Saving>.offset(of: \.id), MemoryLayout<String>.size),
            (MemoryLayout<Saving>.offset(of: \.actionID), MemoryLayout<String>.size),
            (MemoryLayout<Saving>.offset(of: \.co2e), MemoryLayout<CO2e>.size),
            (MemoryLayout<Saving>.offset(of: \.moneySaved), MemoryLayout<Money?>.size),
            (MemoryLayout<Saving>.offset(of: \.period), MemoryLayout<Period>.size),
            (MemoryLayout<Saving>.offset(of: \.recordedAt), MemoryLayout<Timestamp>.size),
        ])
}
