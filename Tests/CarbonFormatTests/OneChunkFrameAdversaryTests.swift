import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat
@testable import CarbonModel

/// Adversarial probes of change frames made of changes inside one chunk (`ItemList`'s one-chunk
/// change): the diff (`encodeChange`) between a record and its copy changed in a few places, in
/// lists decoded whole, cut, filtered, and made by hand, must give frames that, applied to the
/// record before (`applyAppended`, whose splices are themselves one-chunk changes of a cached
/// record), give exactly the record after; the record before must not change; and the applied
/// record's lists must find every key they hold.
@Suite struct OneChunkFrameAdversaryTests {
    /// One change inside one chunk of `list` (or a few, at the same place), with rows from `pool`
    /// (rows of the list itself among them, so keys come back).
    static func editInOneChunk<T: KeyedItem>(_ list: inout ItemList<T>, pool: [T], rng: inout SeededRandom) {
        guard !pool.isEmpty else { return }
        let n = list.count
        guard n > 0 else {
            list.append(rng.pick(pool))
            return
        }
        let (c, o) = list.locate(rng.int(0...(n - 1)))
        let size = list.chunks[c].items.count
        let a = (c == 0 ? 0 : list.ends[c - 1]) + o
        switch rng.int(0...7) {
        case 0: list.insert(rng.pick(pool), at: rng.chance(0.3) ? a - o : a)
        case 1: list.remove(at: a)
        case 2: list[a] = rng.pick(pool)
        case 3: list.replaceSubrange(a..<(a + 1), with: [rng.pick(pool)])
        case 4:
            let b = a + rng.int(0...min(4, size - o))
            let k = rng.int(0...4)
            var rows: [T] = []
            for _ in 0..<k { rows.append(rng.pick(pool)) }
            list.replaceSubrange(a..<b, with: rows)
        case 5:
            list.buildKeyFilters()
            list.insert(rng.pick(pool), at: a)
        case 6:
            // The element at the end of its chunk, or the list's last.
            let end = rng.chance(0.5) ? list.ends[c] - 1 : n - 1
            list.replaceSubrange(end..<(end + 1), with: [rng.pick(pool)])
        default:
            let e = list.remove(at: a)
            list.insert(e, at: min(a + rng.int(0...3), list.count))
        }
    }

    static func change(_ record: UserRecord, donor: UserRecord, rng: inout SeededRandom) -> UserRecord {
        var r = record
        r.revision = record.revision + 1
        for _ in 0..<rng.int(1...3) {
            switch rng.int(0...4) {
            case 0, 1:
                editInOneChunk(
                    &r.transactions, pool: donor.transactions.array + record.transactions.array, rng: &rng)
            case 2:
                editInOneChunk(&r.responses, pool: donor.responses.array + record.responses.array, rng: &rng)
            case 3:
                editInOneChunk(
                    &r.footprints, pool: donor.footprints.array + record.footprints.array, rng: &rng)
            default: editInOneChunk(&r.savings, pool: donor.savings.array + record.savings.array, rng: &rng)
            }
        }
        return r
    }

    /// The list's insides hold (`ends`, no empty chunk, every key held in its chunk's filter) and
    /// every key is found where a byte-exact scan finds it first.
    static func checkList<T: KeyedItem>(_ list: ItemList<T>, _ note: @autoclosure () -> String) -> Bool {
        var end = 0
        for (k, chunk) in list.chunks.enumerated() {
            end += chunk.items.count
            guard !chunk.items.isEmpty, list.ends.count > k, list.ends[k] == end else {
                Issue.record("\(note()): chunk \(k) or its end is wrong")
                return false
            }
            if let f = chunk.filter,
                let missed = chunk.items.first(where: { !f.mayContain(KeyFilter.hash($0.itemKey)) })
            {
                Issue.record("\(note()): chunk \(k)'s filter misses \(Array(missed.itemKey.utf8))")
                return false
            }
        }
        let array = Array(list)
        for (i, e) in array.enumerated() {
            let expected = array.firstIndex { $0.itemKey.isByteEqual(to: e.itemKey) }
            guard expected != i || list.firstIndex(ofKey: e.itemKey) == i else {
                Issue.record("\(note()): key \(Array(e.itemKey.utf8)) at \(i) not found there")
                return false
            }
        }
        return true
    }

    static func checkLists(_ r: UserRecord, _ note: String) -> Bool {
        checkList(r.transactions, "\(note): transactions") && checkList(r.responses, "\(note): responses")
            && checkList(r.footprints, "\(note): footprints") && checkList(r.savings, "\(note): savings")
    }

    /// The record's lists as arrays, to see that a record did not change.
    static func contents(_ r: UserRecord) -> ([Transaction], [QuestionResponse], [Footprint], [Saving]) {
        (Array(r.transactions), Array(r.responses), Array(r.footprints), Array(r.savings))
    }

    static func base(seed: UInt64, byHand: Bool) -> UserRecord {
        var r = RecordGenerator.record(seed: seed, maxItems: seed % 2 == 0 ? 300 : 70)
        r.revision = min(r.revision, 1_000)
        if byHand {
            // Lists made from arrays in memory (one chunk each, no filter), one of them cut and
            // filtered.
            r.transactions = ItemList(Array(r.transactions))
            r.savings = ItemList(Array(r.savings))
            if r.footprints.count > 1 {
                r.footprints[r.footprints.count / 2] = r.footprints[r.footprints.count / 2]
            }
            r.footprints.buildKeyFilters()
        }
        return r
    }

    /// Chains of records each changed inside one chunk of some lists: every frame applied to the
    /// record before gives exactly the record after, leaves the record before as it was, and the
    /// whole file decodes to the record after. The next step starts from the record as applied
    /// (a cached record brought up to date by frames), as decoded, or as changed in memory.
    @Test(arguments: 0..<12)
    func framesOfOneChunkChangesReplayExactly(seed: UInt64) throws {
        let codec = RecordCodec()
        var rng = SeededRandom(seed: seed &* 0x51ED &+ 3)
        let byHand = seed % 3 == 1
        let donors = (0..<2).map { Self.base(seed: seed &* 13 &+ UInt64($0) &+ 500, byHand: false) }
        var before = Self.base(seed: seed &+ 1, byHand: byHand)
        var (file, layout) = try codec.encodeSnapshot(before, fileID: testFileID)
        if !byHand { before = try codec.decodeFile(file).record }
        for step in 0..<40 {
            let note = "seed \(seed) step \(step)"
            let after = Self.change(before, donor: rng.pick(donors), rng: &rng)
            let kept = Self.contents(before)
            let frame = try #require(
                codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()), "\(note)")
            let applied = try frame.bytes.withUnsafeBytes {
                try codec.applyAppended($0, to: before, layout: layout)
            }
            #expect(applied.record == after, "\(note): applyAppended")
            #expect(Self.contents(before) == kept, "\(note): the record before changed")
            guard Self.checkLists(applied.record, "\(note): applied"),
                Self.checkLists(after, "\(note): after")
            else { return }
            file += frame.bytes
            layout = layout.appending(frame)
            if step % 8 == 7 {
                let decoded = try codec.decodeFile(file)
                #expect(decoded.record == after, "\(note): decodeFile")
                #expect(decoded.layout == layout, "\(note): layout")
            }
            switch rng.int(0...3) {
            case 0, 1: before = applied.record
            case 2: before = after
            default: before = try codec.decodeFile(file).record
            }
        }
    }

    /// A record whose lists are cut in chunks of at most 64, changed in one place inside one chunk:
    /// the frame's splice is no longer than the change (the diff finds the place), and the lists
    /// share all but at most that chunk.
    @Test func oneChangeInsideAChunkMakesASpliceOfThatChange() throws {
        let codec = RecordCodec()
        let (file, layout) = try codec.encodeSnapshot(RecordGenerator.workload(.w2), fileID: testFileID)
        var before = try codec.decodeFile(file).record
        let n = before.transactions.count
        #expect(n > 300)
        before.transactions[n / 2] = before.transactions[n / 2]  // cut
        before.revision += 1
        var rng = SeededRandom(seed: 77)
        for trial in 0..<60 {
            var after = before
            after.revision += 1
            let i = rng.int(0...(n - 1))
            let (c, _) = before.transactions.locate(i)
            let chunkLength = before.transactions.chunks[c].items.count
            #expect(chunkLength <= 64)
            var row = after.transactions[i]
            row.amount = Money(minorUnits: row.amount.minorUnits &+ 1, currency: row.amount.currency)
            after.transactions.replaceSubrange(i..<(i + 1), with: [row])
            let shared = before.transactions.sharedEnds(with: after.transactions)
            #expect(n - shared.prefix - shared.suffix <= 64, "trial \(trial): \(shared) of \(n)")
            let splice = try #require(FrameCodecProbe.splice(before.transactions, after.transactions))
            #expect(splice.0 == i && splice.1 == 1 && splice.2 == [row], "trial \(trial)")
            let frame = try #require(
                codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()))
            let applied = try frame.bytes.withUnsafeBytes {
                try codec.applyAppended($0, to: before, layout: layout)
            }
            #expect(applied.record == after, "trial \(trial)")
        }
    }
}
