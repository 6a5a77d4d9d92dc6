import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonFormat
@testable import CarbonModel

/// Adversarial probes of the change-frame diff on `ItemList`s that share chunks in every way
/// (decoded whole, cut, appended, changed in place, filters built), of the merchant-code check on
/// what changed, and of the section string dictionary (`StringTable`).
@Suite struct DiffAdversaryTests {
    /// A string with the same bytes as `s` in storage of its own.
    static func fresh(_ s: String) -> String { String(decoding: Array(s.utf8), as: UTF8.self) }

    /// Random changes to one list, by every operation the list has; `pool` gives new rows.
    static func mutate<T>(_ list: inout ItemList<T>, pool: [T], rng: inout SeededRandom) {
        guard !pool.isEmpty else { return }
        let n = list.count
        switch rng.int(0...15) {
        case 0: list.append(rng.pick(pool))
        case 1: list.insert(rng.pick(pool), at: rng.int(0...n))
        case 2 where n > 0: list.remove(at: rng.int(0...(n - 1)))
        case 3 where n > 0: list[rng.int(0...(n - 1))] = rng.pick(pool)
        case 4 where n > 1: list.swapAt(rng.int(0...(n - 1)), rng.int(0...(n - 1)))
        case 5 where n > 0:
            // Set an element to itself: no change at all.
            let i = rng.int(0...(n - 1))
            list[i] = list[i]
        case 6:
            let a = rng.int(0...n)
            let b = rng.int(a...min(n, a + 100))
            list.replaceSubrange(a..<b, with: (0..<rng.int(0...80)).map { _ in rng.pick(pool) })
        case 7: list.reverse()
        case 8 where n > 0:
            let a = rng.int(0...(n - 1))
            let b = rng.int(a...n)
            list[a..<b].reverse()
        case 9: list.buildKeyFilters()
        case 10 where n > 0:
            let k = rng.int(0...(n - 1))
            let key = list[k].itemKey
            list.removeAll { $0.itemKey.isByteEqual(to: key) }
        case 11: list.append(contentsOf: (0..<rng.int(0...130)).map { _ in rng.pick(pool) })
        case 12 where n > 0: list.removeLast(rng.int(0...min(n, 70)))
        case 13 where n > 0:
            // Remove and put back: the same elements in new chunks.
            let i = rng.int(0...(n - 1))
            let e = list.remove(at: i)
            list.insert(e, at: i)
        case 14: list = ItemList(Array(list))
        default: break
        }
    }

    static func change(_ record: UserRecord, donor: UserRecord, rng: inout SeededRandom) -> UserRecord {
        var r = record
        r.revision = record.revision + 1
        for _ in 0..<rng.int(1...4) {
            switch rng.int(0...5) {
            case 0, 1:
                mutate(&r.transactions, pool: donor.transactions.array + record.transactions.array, rng: &rng)
            case 2: mutate(&r.responses, pool: donor.responses.array, rng: &rng)
            case 3: mutate(&r.footprints, pool: donor.footprints.array, rng: &rng)
            case 4: mutate(&r.savings, pool: donor.savings.array, rng: &rng)
            default:
                // Through the record's keyed API (which builds the filters of a list decoded whole).
                if let t = donor.transactions.array.randomElement(using: &rng) {
                    _ = try? r.upsert(t, replace: true)
                }
                if let f = donor.footprints.array.randomElement(using: &rng) { r.upsert(f) }
                if let q = donor.responses.array.randomElement(using: &rng) { r.answer(q) }
                if let t = r.transactions.array.randomElement(using: &rng) { r.removeTransaction(id: t.id) }
            }
        }
        return r
    }

    static func base(seed: UInt64) -> UserRecord {
        var r = RecordGenerator.record(seed: seed, maxItems: seed % 3 == 0 ? 400 : 40)
        r.revision = min(r.revision, 1_000)
        return r
    }

    /// Chains of random changes, each written as a frame from the record before to the record
    /// after: applied to the old file (`applyAppended`) and decoded whole (`decodeFile`), the file
    /// must give exactly the new record. Before each step the old record may itself have been
    /// decoded whole, or changed in another way after the new one was copied from it (two copies
    /// sharing chunks that have since diverged).
    @Test(arguments: 0..<24)
    func framesOfRandomChangesOnSharedChunksReplayExactly(seed: UInt64) throws {
        let codec = RecordCodec()
        var rng = SeededRandom(seed: seed &* 0x9E37 &+ 17)
        let donors = (0..<3).map { Self.base(seed: seed &* 7 &+ UInt64($0) &+ 1000) }
        var before = Self.base(seed: seed)
        var (file, layout) = try codec.encodeSnapshot(before, fileID: testFileID)
        if rng.chance(0.5) { before = try codec.decodeFile(file).record }
        for step in 0..<25 {
            var after = Self.change(before, donor: rng.pick(donors), rng: &rng)
            if rng.chance(0.2) {
                // The old record changes too, after the copy: write it first, as its own frame.
                let diverged = Self.change(before, donor: rng.pick(donors), rng: &rng)
                let frame = try #require(
                    codec.encodeChange(from: before, to: diverged, appendingTo: layout, id: .random()))
                file += frame.bytes
                layout = layout.appending(frame)
                before = diverged
                after.revision = before.revision + 1
            }
            let frame = try #require(
                codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()),
                "seed \(seed) step \(step)")
            let applied = try frame.bytes.withUnsafeBytes {
                try codec.applyAppended($0, to: before, layout: layout)
            }
            #expect(applied.record == after, "seed \(seed) step \(step): applyAppended")
            file += frame.bytes
            layout = layout.appending(frame)
            let decoded = try codec.decodeFile(file)
            #expect(decoded.record == after, "seed \(seed) step \(step): decodeFile")
            #expect(decoded.layout == layout)
            #expect(
                RecordCodec.firstUnwritableTransaction(from: before, to: after) == nil,
                "generated codes are all valid")
            // The next step starts from the record as decoded, as applied, or as changed in memory.
            switch rng.int(0...2) {
            case 0: before = decoded.record
            case 1: before = applied.record
            default: before = after
            }
        }
    }

    /// A frame between a record and a copy whose only change puts back what was there (in new
    /// chunks) says nothing about the lists.
    @Test func aChangeUndoneIsNoSplice() throws {
        let codec = RecordCodec()
        let (file, layout) = try codec.encodeSnapshot(RecordGenerator.workload(.w2), fileID: testFileID)
        let before = try codec.decodeFile(file).record
        var after = before
        after.revision += 1
        let i = after.transactions.count / 2
        let t = after.transactions.remove(at: i)
        after.transactions.insert(t, at: i)
        after.transactions.buildKeyFilters()
        #expect(FrameCodecProbe.splice(before.transactions, after.transactions) == nil)
        let frame = try #require(
            codec.encodeChange(from: before, to: after, appendingTo: layout, id: .random()))
        #expect(try codec.decodeFile(file + frame.bytes).record == after)
    }

    // MARK: - The merchant-code check

    /// A code above 9999 put anywhere, by any operation, on a list shared in any way, is found.
    @Test(arguments: 0..<8)
    func aBadMerchantCodeIsFoundWhereverItIsPut(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed &+ 4242)
        let codec = RecordCodec()
        var record = RecordGenerator.workload(.w2, seed: seed + 1)
        if seed % 2 == 0 {
            let (file, _) = try codec.encodeSnapshot(record, fileID: testFileID)
            record = try codec.decodeFile(file).record
        }
        if seed % 4 == 1 { record.transactions[7] = record.transactions[7] }  // cut
        let n = record.transactions.count
        for way in 0..<8 {
            var bad = record.transactions[rng.int(0...(n - 1))]
            bad.mcc = UInt16(rng.int(10_000...Int(UInt16.max)))
            var after = record
            switch way {
            case 0: after.transactions.append(bad)
            case 1: after.transactions.insert(bad, at: rng.int(0...n))
            case 2: after.transactions[rng.int(0...(n - 1))] = bad
            case 3: after.transactions.replaceSubrange(10..<20, with: [bad])
            case 4:
                bad.id = "new-\(way)"
                try after.upsert(bad)
            case 5:
                try after.upsert(bad, replace: true)
            case 6:
                after.transactions[0] = bad
                after.transactions.reverse()
            default:
                after.transactions += [record.transactions[0], bad, record.transactions[1]]
            }
            let found = RecordCodec.firstUnwritableTransaction(from: record, to: after)
            #expect(found != nil && found!.mcc! > 9999, "seed \(seed) way \(way)")
        }
    }

    // MARK: - StringTable

    @Test func theStringTableKeepsEveryDistinctByteStringOnce() {
        var table = StringTable(capacity: 4)
        var expected: [[UInt8]] = []
        var ids: [[UInt8]: Int] = [:]
        func add(_ s: String) {
            let id = table.id(s)
            let bytes = Array(s.utf8)
            if let old = ids[bytes] {
                #expect(id == old, "\(bytes) got a second id")
            } else {
                #expect(id == expected.count, "\(bytes): new strings take the next id")
                ids[bytes] = id
                expected.append(bytes)
            }
        }
        // Canonically equivalent spellings, NUL bytes, lengths around the 8-byte steps of the hash,
        // strings that differ only in their last byte, and many thousands of others.
        let awkward = [
            "", "\u{0}", "\u{0}\u{0}", "a", "a\u{0}", "caf\u{E9}", "cafe\u{301}", "\u{212B}", "\u{C5}",
            "A\u{30A}", "12345678", "12345678\u{0}", "123456789", "1234567", "\u{1F600}",
        ]
        for s in awkward { add(s) }
        for i in 0..<20_000 {
            add("s\(i)")
            add(String(repeating: "x", count: i % 40) + "\(i % 97)")
            if i % 3 == 0 { add(Self.fresh("s\(i / 2)")) }
        }
        for s in awkward { add(Self.fresh(s)) }
        #expect(table.strings.count == expected.count)
        #expect(table.strings.map { Array($0.utf8) } == expected)
        // Every string is still found, by another storage too.
        for (i, bytes) in expected.enumerated() {
            #expect(table.id(String(decoding: bytes, as: UTF8.self)) == i)
        }
        #expect(table.strings.count == expected.count)
    }

    /// The same record encodes to the same bytes whether its strings share storage or not, and
    /// canonically equivalent strings stay apart through a round trip.
    @Test func encodingDoesNotDependOnStringStorage() throws {
        let codec = RecordCodec()
        for seed in UInt64(0)..<30 {
            var record = RecordGenerator.record(seed: seed, maxItems: 60)
            if seed % 3 == 0 { record = RecordGenerator.workload(.w1, seed: seed + 1) }
            // Shared: every merchant the same storage; then equivalent spellings in places.
            let shared = String(repeating: "merchant-\u{E9}", count: 3)
            for i in record.transactions.indices {
                switch i % 4 {
                case 0: record.transactions[i].merchant = shared
                case 1: record.transactions[i].merchant = Self.fresh(shared)
                case 2:
                    record.transactions[i].merchant = shared.replacingOccurrences(
                        of: "\u{E9}", with: "e\u{301}")
                default: break
                }
            }
            let copy = Self.deepCopy(record)
            #expect(copy == record)
            let a = codec.encode(record, fileID: testFileID)
            let b = codec.encode(copy, fileID: testFileID)
            #expect(a == b, "seed \(seed)")
            let decoded = try codec.decodeFile(a).record
            #expect(decoded == record, "seed \(seed)")
            #expect(codec.encode(decoded, fileID: testFileID) == a, "seed \(seed): decoded re-encodes alike")
        }
    }

    /// `record` with every string in storage of its own.
    static func deepCopy(_ r: UserRecord) -> UserRecord {
        func f(_ s: String?) -> String? { s.map(fresh) }
        func dict<V>(_ d: ExactDictionary<V>, _ value: (V) -> V) -> ExactDictionary<V> {
            var out: ExactDictionary<V> = [:]
            for (k, v) in d { out[fresh(k)] = value(v) }
            return out
        }
        var c = r
        c.userID = fresh(r.userID)
        c.transactions = ItemList(
            r.transactions.map { t in
                var t = t
                t.id = fresh(t.id)
                t.merchant = f(t.merchant)
                t.category = f(t.category)
                t.description = f(t.description)
                t.accountID = f(t.accountID)
                t.metadata = dict(t.metadata) { fresh($0) }
                return t
            })
        c.responses = ItemList(
            r.responses.map { q in
                var q = q
                q.questionID = fresh(q.questionID)
                switch q.answer {
                case .text(let s): q.answer = .text(fresh(s))
                case .choices(let a): q.answer = .choices(a.map(fresh))
                default: break
                }
                return q
            })
        c.preferences = dict(r.preferences) { Preference(value: fresh($0.value), updatedAt: $0.updatedAt) }
        c.footprints = ItemList(
            r.footprints.map { x in
                var x = x
                x.id = fresh(x.id)
                x.transactionID = f(x.transactionID)
                x.category = fresh(x.category)
                x.methodology = fresh(x.methodology)
                return x
            })
        c.savings = ItemList(
            r.savings.map { s in
                var s = s
                s.id = fresh(s.id)
                s.actionID = fresh(s.actionID)
                return s
            })
        return c
    }
}

/// The codec's splice of two lists, for assertions.
enum FrameCodecProbe {
    static func splice<T: FrameRow>(_ a: ItemList<T>, _ b: ItemList<T>) -> (Int, Int, [T])? {
        RecordCodec.splice(a, b).map { ($0.start, $0.removeCount, Array($0.rows)) }
    }
}
