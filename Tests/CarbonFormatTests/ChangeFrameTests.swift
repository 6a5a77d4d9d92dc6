import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// A fixed snapshot id for tests that compare bytes.
let testFileID = WriteID(high: 0x0F0E_0D0C_0B0A_0908, low: 0x0706_0504_0302_0100)

/// Random changes of every kind to a record (docs/FORMAT.md §13): rows appended, inserted, removed
/// and replaced in the four arrays, preferences added, changed and removed, times changed.
struct Mutator {
    var rng: SeededRandom
    /// Rows to insert come from other generated records.
    var donors: [UserRecord]

    init(seed: UInt64) {
        rng = SeededRandom(seed: seed)
        donors = (0..<4).map { RecordGenerator.record(seed: seed &* 31 &+ UInt64($0) &+ 1, maxItems: 12) }
    }

    mutating func splice<T>(_ array: inout ItemList<T>, from pool: ItemList<T>) {
        guard !pool.isEmpty || !array.isEmpty else { return }
        let start = rng.int(0...array.count)
        let remove = rng.chance(0.5) ? 0 : rng.int(0...(array.count - start))
        let insert = pool.isEmpty ? 0 : rng.int(0...min(3, pool.count))
        let rows = (0..<insert).map { _ in rng.pick(pool) }
        switch rng.int(0...3) {
        case 0: array.append(contentsOf: rows)  // the common case: an append
        case 1:
            if !array.isEmpty {
                array[rng.int(0...(array.count - 1))] = pool.isEmpty ? array[0] : rng.pick(pool)
            }
        default: array.replaceSubrange(start..<(start + remove), with: rows)
        }
    }

    mutating func change(_ record: UserRecord) -> UserRecord {
        var r = record
        let donor = rng.pick(donors)
        r.revision = record.revision &+ UInt64(rng.int(1...3))
        if rng.chance(0.3) {
            r.updatedAt = Timestamp(millisecondsSince1970: Int64(rng.int(-1000...1_000_000)))
        }
        if rng.chance(0.1) { r.createdAt = Timestamp(millisecondsSince1970: Int64(rng.int(-1000...1000))) }
        if rng.chance(0.6) { splice(&r.transactions, from: donor.transactions) }
        if rng.chance(0.3) { splice(&r.responses, from: donor.responses) }
        if rng.chance(0.3) { splice(&r.footprints, from: donor.footprints) }
        if rng.chance(0.3) { splice(&r.savings, from: donor.savings) }
        if rng.chance(0.3) {
            for (k, v) in donor.preferences where rng.chance(0.5) { r.preferences[k] = v }
            for k in r.preferences.keys where rng.chance(0.2) { r.preferences[k] = nil }
            if let k = r.preferences.keys.first, rng.chance(0.5) {
                r.preferences[k] = Preference(
                    value: "changed", updatedAt: Timestamp(millisecondsSince1970: 5))
            }
        }
        return r
    }
}

/// A frame built by hand from docs/FORMAT.md §13, with a valid CRC, for hostile and forged tails.
func craftFrame(
    previous: WriteID, id: WriteID, revision: UInt64, createdAt: Int64 = 0, updatedAt: Int64 = 0,
    parts: [UInt8] = [], length: UInt32? = nil
) -> [UInt8] {
    var f = RecordCodec.frameMarker + Craft.le32(length ?? UInt32(48 + parts.count + 20))
    f += previous.bytes + Craft.le64(revision) + Craft.le64(UInt64(bitPattern: createdAt))
    f += Craft.le64(UInt64(bitPattern: updatedAt)) + parts + id.bytes
    return f + Craft.le32(CRC32C.checksum(f))
}

func craftPart(tag: UInt16, body: [UInt8], length: UInt32? = nil) -> [UInt8] {
    Craft.le16(tag) + Craft.le32(length ?? UInt32(body.count)) + body
}

@Suite struct ChangeFrameTests {
    /// A snapshot and the frames of `steps` random changes: the file after each step, and the record.
    static func history(seed: UInt64, steps: Int, codec: RecordCodec = RecordCodec())
        throws -> [(file: [UInt8], record: UserRecord, layout: FileLayout)]
    {
        var mutator = Mutator(seed: seed)
        var ids = SeededRandom(seed: seed ^ 0xF00D)
        var record = RecordGenerator.record(seed: seed, maxItems: 12, preservedSections: seed % 5 == 1)
        record.revision = min(record.revision, 1_000)
        let fileID = WriteID(high: ids.next(), low: ids.next())
        var (file, layout) = try codec.encodeSnapshot(record, fileID: fileID)
        var out = [(file, record, layout)]
        for _ in 0..<steps {
            let next = mutator.change(record)
            let frame = try #require(
                codec.encodeChange(
                    from: record, to: next, appendingTo: layout,
                    id: WriteID(high: ids.next(), low: ids.next())))
            file += frame.bytes
            layout = layout.appending(frame)
            record = next
            out.append((file, record, layout))
        }
        return out
    }

    @Test func randomChangesReplayAsFrames() throws {
        for seed in UInt64(0)..<60 {
            for codec in [RecordCodec(), RecordCodec(options: .init(compression: .none))] {
                for (file, record, layout) in try Self.history(seed: seed, steps: 12, codec: codec) {
                    let decoded = try codec.decodeFile(file)
                    #expect(decoded.record == record, "seed \(seed), frame \(layout.frameCount)")
                    #expect(decoded.layout == layout, "seed \(seed), frame \(layout.frameCount)")
                    #expect(try codec.decode(file) == record)
                    var scanned = try file.withUnsafeBytes { try codec.scanLayout($0) }
                    #expect(!scanned.itemCountIsKnown && scanned.itemCount == 0)
                    scanned.itemCount = layout.itemCount
                    scanned.itemCountIsKnown = true
                    #expect(scanned == layout, "seed \(seed)")
                    let report = try RecordCodec.inspect(file)
                    #expect(report.frames.count == layout.frameCount)
                    #expect(report.layout.validLength == file.count && report.ignoredReason == nil)
                }
            }
        }
    }

    @Test func anAppendIsASmallSplice() throws {
        let before = RecordGenerator.workload(.w2, seed: 1)
        let (_, layout) = try RecordCodec().encodeSnapshot(before, fileID: testFileID)
        var after = before
        after.revision += 1
        after.transactions.append(RecordGenerator.record(seed: 11).transactions[0])
        let frame = try #require(
            RecordCodec().encodeChange(from: before, to: after, appendingTo: layout, id: .random()))
        #expect(frame.bytes.count < 1024)  // against a 1.3 MB snapshot
        let report = try RecordCodec.inspect(
            RecordCodec().encodeSnapshot(before, fileID: testFileID).bytes + frame.bytes)
        #expect(report.frames.map { $0.parts.map(\.tag) } == [[SectionTag.transactions]])
        // A change with nothing but the revision: a frame without parts.
        var bumped = before
        bumped.revision += 1
        let empty = try #require(
            RecordCodec().encodeChange(from: before, to: bumped, appendingTo: layout, id: .random()))
        #expect(empty.bytes.count == RecordCodec.minFrameLength)
    }

    @Test func equalRowsThatAreNotIdenticalInMemoryAreStillFound() throws {
        // Two decodes of one file: equal rows, separate string storage, so the byte comparison
        // fails for every row and `==` decides.
        let codec = RecordCodec()
        let (bytes, layout) = try codec.encodeSnapshot(
            RecordGenerator.workload(.w1, seed: 4), fileID: testFileID)
        let before = try codec.decode(bytes)
        var after = try codec.decode(bytes)
        after.revision += 1
        after.footprints.remove(at: 500)
        let frame = try #require(
            codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()))
        #expect(frame.bytes.count < 100)
        #expect(try codec.decode(bytes + frame.bytes) == after)
    }

    @Test func rowMasksKnowEveryField() {
        // A field added to a row type and not to its mask makes the comparison slower, never wrong;
        // this test says so.
        #expect(Transaction.rowMask.excludesPadding)
        #expect(QuestionResponse.rowMask.excludesPadding)
        #expect(Footprint.rowMask.excludesPadding)
        #expect(Saving.rowMask.excludesPadding)
    }

    @Test func noFrameForWhatFramesCannotSay() throws {
        let codec = RecordCodec()
        let before = RecordGenerator.record(seed: 3)
        let (bytes, layout) = try codec.encodeSnapshot(before, fileID: testFileID)
        var after = before
        after.revision += 1
        #expect(codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()) != nil)
        var renamed = after
        renamed.userID += "x"
        #expect(codec.encodeChange(from: before, to: renamed, appendingTo: layout, id: .random()) == nil)
        var preserved = after
        preserved.preservedSections.append(PreservedSection(tag: 9, flags: 0, payload: [1]))
        #expect(codec.encodeChange(from: before, to: preserved, appendingTo: layout, id: .random()) == nil)
        #expect(codec.encodeChange(from: before, to: before, appendingTo: layout, id: .random()) == nil)
        let v1 = try codec.decodeFile(codec.encodeVersion1(before)).layout
        #expect(v1.formatVersion == 1 && v1.fileID == nil && v1.lastID == nil)
        #expect(codec.encodeChange(from: before, to: after, appendingTo: v1, id: .random()) == nil)
        let scanned = try bytes.withUnsafeBytes { try codec.scanLayout($0) }
        #expect(codec.encodeChange(from: before, to: after, appendingTo: scanned, id: .random()) == nil)
    }

    @Test func version1FilesStayReadable() throws {
        let codec = RecordCodec()
        for seed in UInt64(0)..<50 {
            let record = RecordGenerator.record(seed: seed, preservedSections: seed % 3 == 1)
            let v1 = codec.encodeVersion1(record)
            #expect(try RecordCodec.readHeader(v1).formatVersion == 1)
            let (decoded, layout) = try codec.decodeFile(v1)
            #expect(decoded == record)
            #expect(
                layout.snapshotLength == v1.count && layout.validLength == v1.count && layout.frameCount == 0)
            // A version-1 file ends after its sections: nothing after them is a tail.
            let e = Craft.error(v1 + craftFrame(previous: testFileID, id: .random(), revision: 1))
            #expect(e?.kind == .trailingBytes)
            // Its next write is a version-2 snapshot of the same record (version 3 where a
            // section is compressed with zstd, the default).
            let v2 = RecordCodec(options: .init(compression: .zlib(level: 1))).encode(
                decoded, fileID: testFileID)
            #expect(try RecordCodec.readHeader(v2).fileID == testFileID)
            #expect(try RecordCodec.readHeader(v2).formatVersion == 2)
            #expect(v2.count == v1.count + 16)
            #expect(try codec.decode(v2) == record)
            let v3 = codec.encode(decoded, fileID: testFileID)
            let expected: UInt16 = try RecordCodec.layout(of: v3).sections.contains(where: \.isZstd) ? 3 : 2
            #expect(try RecordCodec.readHeader(v3).formatVersion == expected)
            #expect(try codec.decode(v3) == record)
        }
    }

    @Test func snapshotsAreDeterministicForOneFileID() throws {
        let record = RecordGenerator.workload(.w1, seed: 2)
        let a = RecordCodec().encode(record, fileID: testFileID)
        #expect(RecordCodec().encode(record, fileID: testFileID) == a)
        #expect(try RecordCodec().encodeSnapshot(record, fileID: testFileID).bytes == a)
        #expect(Array(a[12..<28]) == testFileID.bytes)
        #expect(RecordCodec().encode(record) != RecordCodec().encode(record))  // fresh ids
        let header = try RecordCodec.readHeader(a)
        #expect(header.formatVersion == 3 && header.fileID == testFileID)
    }

    // MARK: Torn and forged tails

    @Test func everyPrefixOfTheLastFrameIsATornTail() throws {
        for seed in UInt64(100)..<110 {
            let steps = try Self.history(seed: seed, steps: 3)
            let (full, _, _) = steps[3]
            let (previousFile, previousRecord, previousLayout) = steps[2]
            for cut in previousFile.count..<full.count {
                let (record, layout) = try RecordCodec().decodeFile(Array(full[..<cut]))
                #expect(record == previousRecord, "seed \(seed), cut \(cut)")
                var expected = previousLayout
                expected.ignoredLength = cut - previousFile.count
                #expect(layout == expected, "seed \(seed), cut \(cut)")
                let rest = Array(full[previousFile.count..<cut])
                #expect(
                    !rest.withUnsafeBytes {
                        RecordCodec().startsWithFrame($0, chainedTo: try! #require(previousLayout.lastID))
                    })
            }
            let tail = Array(full[previousFile.count...])
            #expect(
                tail.withUnsafeBytes { RecordCodec().startsWithFrame($0, chainedTo: previousLayout.lastID!) })
            #expect(!tail.withUnsafeBytes { RecordCodec().startsWithFrame($0, chainedTo: testFileID) })
        }
    }

    /// A reserve (zero bytes after the last frame, which appends on a volume are written into) is no
    /// content, and what a crash leaves of one append written into it is one torn append; anything
    /// with non-zero bytes past one frame is damage, reserve or not.
    @Test func aTornAppendIntoAReserveIsOneTornAppendAndMoreIsDamage() throws {
        let steps = try Self.history(seed: 21, steps: 3)
        let frame = Array(steps[3].file[steps[2].file.count...])
        let earlier = Array(steps[2].file[steps[1].file.count...])
        let reserve = [UInt8](repeating: 0, count: 4096)
        // The tails below start at a sector boundary of the file, unless `offset` says otherwise.
        func torn(_ tail: [UInt8], at offset: Int = 4096) -> Bool {
            tail.withUnsafeBytes { RecordCodec.isOneTornAppend($0, at: offset) }
        }

        // Readers stop at the reserve: the record and valid length are the file's without it.
        let (record, layout) = try RecordCodec().decodeFile(steps[3].file + reserve)
        #expect(record == steps[3].record && layout.validLength == steps[3].file.count)
        #expect(layout.ignoredLength == reserve.count && torn(reserve))

        // Every prefix of a frame written over the reserve, the rest still zeros: one torn append.
        for cut in 1..<frame.count {
            let tail = Array(frame[..<cut]) + reserve[cut...]
            #expect(torn(tail), "a prefix of \(cut) bytes")
            let (r, l) = try RecordCodec().decodeFile(steps[2].file + tail)
            #expect(r == steps[2].record && l.validLength == steps[2].file.count, "a prefix of \(cut) bytes")
        }
        // A frame that reached the disk whole (every 512-byte sector of the file within it holds a
        // non-zero byte) and fails its CRC (one byte flipped), with only zeros after it: damage after
        // it was written, maybe to an acknowledged change, never cut. Wherever it lies in the file.
        var damaged = frame
        damaged[damaged.count / 2] ^= 0x40
        for offset in [0, 4096, 4096 - frame.count / 2, 4096 - 9, 5000] {
            #expect(!torn(damaged + reserve, at: offset), "at \(offset)")
        }
        for index in [8, 20, frame.count - 5, frame.count - 1] {
            var flipped = frame
            flipped[index] ^= 0x01
            #expect(!torn(flipped + reserve), "a byte flipped at \(index)")
        }
        // A damaged `length` that makes the frame shorter than its bytes: with the marker and the
        // length in one sector, the length is the one written, so the non-zero bytes after it are
        // damage. Where they straddle two sectors (the frame starts at one of a sector's last 7
        // bytes), the length's later bytes may be a lost sector's zeros: one torn append.
        var shorter = frame
        shorter[4] = shorter[4] &- 16
        #expect(!torn(shorter + reserve, at: 4096), "a length made shorter")
        #expect(!torn(shorter + reserve, at: 4096 - 8), "marker and length end the sector")
        #expect(torn(shorter + reserve, at: 4096 - 7), "marker and length straddle two sectors")
        // A frame of three sectors whose last byte was written but a sector in its middle was lost
        // in a power cut (still zeros): one torn append, cut. (A frame of one or two sectors that
        // lost one lacks its first or its last bytes: the cases above.) Where the sectors fall
        // depends on the frame's offset in the file.
        var long = [UInt8](repeating: 0, count: 1200)
        long.replaceSubrange(0..<frame.count, with: frame)
        long.replaceSubrange(4..<8, with: withUnsafeBytes(of: UInt32(1200).littleEndian) { Array($0) })
        long[1199] = 7
        long[700] = 3
        #expect(!torn(long + reserve, at: 0), "every sector of a 1,200-byte frame written")
        long[700] = 0
        long[450] = 5
        #expect(torn(long + reserve, at: 0), "bytes 512 to 1023 lost")
        #expect(!torn(long + reserve, at: 100), "no sector of the file all zeros within it")
        // A damaged frame with a committed frame after it, before the reserve: damage, never cut.
        #expect(!torn(damaged + frame + reserve))
        #expect(!torn(earlier + damaged + reserve), "bytes past the first frame's length")
        // Non-zero bytes that start neither with zeros nor with a frame's marker: damage.
        #expect(!torn([0x01] + reserve))
        #expect(!torn([0x01] + frame + reserve))
        // The start of a marker, then zeros: one append cut short.
        #expect(torn([0x89, 0x43] + reserve))
        // The frame's first sectors lost and its later ones written (a power cut during the write):
        // zeros, then a fragment in which no complete frame starts. One torn append, cut.
        let half = frame.count / 2
        #expect(torn([UInt8](repeating: 0, count: half) + frame[half...] + reserve))
        #expect(torn([0, 0, 0, 0, 0x89, 0x43] + reserve))
        // Zeros, then a complete frame whose CRC matches (a committed frame, whatever it is chained
        // to): damage, never cut.
        #expect(!torn(reserve + frame))
        #expect(!torn([UInt8](repeating: 0, count: 10) + damaged + frame + reserve))
        // The same with a frame whose last byte is zero (its CRC's high byte, 1 frame in 256), which
        // the reserve's zeros then continue.
        var zeroEnded: [UInt8]?
        for seed in UInt64(300)..<UInt64(2300) where zeroEnded == nil {
            let h = try Self.history(seed: seed, steps: 1)
            let f = Array(h[1].file[h[0].file.count...])
            if f.last == 0 { zeroEnded = f }
        }
        let ending = try #require(zeroEnded, "a frame whose CRC ends with a zero byte")
        #expect(!torn([UInt8](repeating: 0, count: 10) + ending + reserve))
        #expect(!torn(damaged + ending + reserve))
        // A sector boundary within the marker and length: their first bytes written, the next
        // sector lost (zeros), a later one written. No complete frame: one torn append.
        var straddling = [UInt8](repeating: 0, count: 1024)
        straddling.replaceSubrange(0..<3, with: frame[0..<3])
        straddling.replaceSubrange(512..<(512 + frame.count - 3), with: frame[3...])
        #expect(torn(straddling + reserve))
        straddling.replaceSubrange(600..<(600 + frame.count), with: frame)
        #expect(!torn(straddling + reserve), "a complete frame in it")
    }

    @Test func forgedTailsAreIgnored() throws {
        let a = try Self.history(seed: 7, steps: 4)
        let b = try Self.history(seed: 8, steps: 2)
        func frames(_ h: [(file: [UInt8], record: UserRecord, layout: FileLayout)]) -> [[UInt8]] {
            (1..<h.count).map { Array(h[$0].file[h[$0 - 1].file.count...]) }
        }
        let fa = frames(a)
        let snapshot = a[0].file
        func decoded(_ bytes: [UInt8]) throws -> (UserRecord, FileLayout) {
            try RecordCodec().decodeFile(bytes)
        }

        // A frame of another file (chained to another snapshot).
        let other = try decoded(a[2].file + frames(b)[0])
        #expect(other.0 == a[2].record && other.1.ignoredLength == frames(b)[0].count)
        // A replayed frame: the same frame twice.
        let replayed = try decoded(a[2].file + fa[1])
        #expect(
            replayed.0 == a[2].record && replayed.1.frameCount == 2 && replayed.1.ignoredLength == fa[1].count
        )
        // Two frames swapped: the first out of place starts the ignored tail.
        let swapped = try decoded(snapshot + fa[1] + fa[0])
        #expect(swapped.0 == a[0].record && swapped.1.frameCount == 0)
        #expect(swapped.1.ignoredLength == fa[0].count + fa[1].count)
        // A frame with a wrong previousID (its CRC recomputed).
        var wrong = fa[0]
        wrong[8] ^= 1
        let body = Array(wrong[..<(wrong.count - 4)])
        wrong = body + Craft.le32(CRC32C.checksum(body))
        let chained = try decoded(snapshot + wrong)
        #expect(chained.0 == a[0].record && chained.1.ignoredLength == wrong.count)
        // A flipped byte in a middle frame: it and every frame after it are ignored.
        let all = a[4].file
        let middle = a[2].file.count - fa[1].count + 30
        for position in [middle, a[1].file.count, a[2].file.count - 1] {
            var damaged = all
            damaged[position] ^= 0x20
            let d = try decoded(damaged)
            #expect(d.0 == a[1].record && d.1.frameCount == 1 && d.1.validLength == a[1].file.count)
            #expect(d.1.ignoredLength == all.count - a[1].file.count)
            #expect(try RecordCodec.inspect(damaged).ignoredReason != nil)
        }
        // Garbage after the snapshot.
        let garbage = try decoded(snapshot + [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(garbage.0 == a[0].record && garbage.1.ignoredLength == 10)
    }

    // MARK: Limits

    @Test func framesCountAgainstTheLimits() throws {
        let record = RecordGenerator.record(seed: 12)
        var after = record
        after.revision += 1
        after.transactions.append(contentsOf: RecordGenerator.record(seed: 13).transactions)
        let loose = RecordCodec()
        let (bytes, layout) = try loose.encodeSnapshot(record, fileID: testFileID)
        let frame = try #require(
            loose.encodeChange(from: record, to: after, appendingTo: layout, id: .random()))
        let file = bytes + frame.bytes
        let full = try loose.decodeFile(file).layout
        #expect(full.decodedSize == layout.decodedSize + frame.decodedSize)
        #expect(full.itemCount == layout.itemCount + frame.itemCount)

        // Exactly at each limit: accepted; one below: encodeChange refuses and readers refuse.
        let limits: [(RecordCodec.Limits, RecordCodec.Limits)] = [
            (.init(maxFileSize: file.count), .init(maxFileSize: file.count - 1)),
            (.init(maxDecodedSize: full.decodedSize), .init(maxDecodedSize: full.decodedSize - 1)),
            (.init(maxItemCount: full.itemCount), .init(maxItemCount: full.itemCount - 1)),
        ]
        for (fits, tight) in limits {
            let ok = RecordCodec(limits: fits)
            #expect(ok.encodeChange(from: record, to: after, appendingTo: layout, id: frame.id) == frame)
            #expect(try ok.decode(file) == after)
            let refusing = RecordCodec(limits: tight)
            #expect(refusing.encodeChange(from: record, to: after, appendingTo: layout, id: frame.id) == nil)
            #expect(throws: FormatError.self) { try refusing.decode(file) }
        }
        // The ignored tail counts against maxFileSize too.
        let torn = file + [0x89]
        #expect(throws: FormatError.self) {
            try RecordCodec(limits: .init(maxFileSize: file.count)).decode(torn)
        }
    }

    // MARK: Hostile frames

    /// A snapshot and a crafted frame chained to it: CRC and chain valid, so damage is an error.
    static func hostile(_ parts: [UInt8], revision: UInt64 = 10) throws -> FormatError? {
        let record = UserRecord(
            userID: "u", revision: 5, createdAt: Timestamp(millisecondsSince1970: 0),
            transactions: RecordGenerator.record(seed: 2).transactions,
            preferences: ["a": Preference(value: "b", updatedAt: Timestamp(millisecondsSince1970: 1))])
        let snapshot = RecordCodec().encode(record, fileID: testFileID)
        let frame = craftFrame(previous: testFileID, id: .random(), revision: revision, parts: parts)
        do {
            _ = try RecordCodec().decode(snapshot + frame)
            return nil
        } catch { return error }
    }

    @Test func hostileFramesAreErrors() throws {
        let t = SectionTag.transactions
        // A huge row count: refused before anything is reserved for it.
        #expect(
            try Self.hostile(craftPart(tag: t, body: [0, 0] + Craft.varint(1 << 40)))?.kind
                == .lengthBeyondEnd)
        // A splice out of range.
        #expect(
            try Self.hostile(craftPart(tag: t, body: Craft.varint(1000) + [0, 0, 0]))?.kind == .malformed)
        #expect(
            try Self.hostile(craftPart(tag: t, body: [0] + Craft.varint(1 << 62) + [0, 0]))?.kind
                == .malformed)
        // Unknown, repeated and out-of-order parts; a part longer than the frame; a short part header.
        #expect(try Self.hostile(craftPart(tag: 6, body: []))?.kind == .malformed)
        #expect(try Self.hostile(craftPart(tag: 0, body: []))?.kind == .malformed)
        let empty = craftPart(tag: t, body: [0, 0, 0, 0])
        #expect(try Self.hostile(empty + empty)?.kind == .malformed)
        #expect(try Self.hostile(craftPart(tag: 4, body: [0, 0, 0, 0]) + empty)?.kind == .malformed)
        #expect(
            try Self.hostile(craftPart(tag: t, body: [0, 0], length: 0xFFFF_FFFF))?.kind == .lengthBeyondEnd)
        #expect(try Self.hostile([1, 0, 0])?.kind == .truncated)
        // Bytes left over in a part.
        #expect(try Self.hostile(craftPart(tag: t, body: [0, 0, 0, 0, 7]))?.kind == .trailingBytes)
        // A revision that does not increase.
        #expect(try Self.hostile([], revision: 5)?.kind == .malformed)
        // Removing a preference that is not set; a huge removed-key count.
        #expect(try Self.hostile(craftPart(tag: 3, body: [1] + Craft.string("zz") + [0]))?.kind == .malformed)
        #expect(try Self.hostile(craftPart(tag: 3, body: Craft.varint(1 << 50)))?.kind == .lengthBeyondEnd)
        // The valid forms of the same parts apply.
        #expect(try Self.hostile(empty) == nil)
        #expect(try Self.hostile(craftPart(tag: 3, body: [1] + Craft.string("a") + [0])) == nil)
        // A length below the smallest frame, or a frame claiming more than the file: an ignored tail.
        let snapshot = RecordCodec().encode(
            UserRecord(userID: "u", createdAt: .init(millisecondsSince1970: 0)), fileID: testFileID)
        for bad in [
            craftFrame(previous: testFileID, id: .random(), revision: 1, length: 67),
            craftFrame(previous: testFileID, id: .random(), revision: 1, length: 0xFFFF_FFFF),
        ] {
            let layout = try RecordCodec().decodeFile(snapshot + bad).layout
            #expect(layout.frameCount == 0 && layout.ignoredLength == bad.count)
        }
    }
}
