import CarbonStoreTestSupport
import Testing

@testable import CarbonModel

/// Adversarial probes of `ItemList.sharedEnds(with:)` (chunks skipped by identity), of the
/// balanced cut, and of `UserRecord.insertionIndex(of:in:)` (the galloping search).
@Suite struct ItemListSharingAdversaryTests {
    /// A transaction unique by its serial: two of them are equal only if they are the same row.
    static func row(_ serial: Int, time: Int64 = 0) -> Transaction {
        Transaction(
            id: "r\(serial)", time: Timestamp(millisecondsSince1970: time),
            amount: Money(minorUnits: Int64(serial), currency: CurrencyCode("EUR")!))
    }

    /// What `sharedEnds` claims must be equal, element by element, at both ends, and must not
    /// overlap in either list.
    static func checkClaim(
        _ a: ItemList<Transaction>, _ ma: [Transaction], _ b: ItemList<Transaction>, _ mb: [Transaction],
        _ context: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let (p, s) = a.sharedEnds(with: b)
        let (p2, s2) = b.sharedEnds(with: a)
        #expect(
            p >= 0 && s >= 0 && p + s <= min(ma.count, mb.count), "\(context): \(p)+\(s)",
            sourceLocation: sourceLocation)
        #expect(p == p2 && s == s2, "\(context): not symmetric", sourceLocation: sourceLocation)
        guard p >= 0, s >= 0, p + s <= min(ma.count, mb.count) else { return }
        #expect(
            Array(ma[..<p]) == Array(mb[..<p]), "\(context): prefix \(p) claimed",
            sourceLocation: sourceLocation)
        #expect(
            Array(ma[(ma.count - s)...]) == Array(mb[(mb.count - s)...]), "\(context): suffix \(s) claimed",
            sourceLocation: sourceLocation)
    }

    /// Random operations on copies of lists sharing chunks (and storages), checked against arrays;
    /// after each, `sharedEnds` between the changed copy and every list of the pool claims only
    /// what is truly equal.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func sharedEndsNeverClaimMoreThanIsEqual(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var serial = 0
        func fresh() -> Transaction {
            serial += 1
            return Self.row(serial)
        }
        let start = (0..<rng.int(0...300)).map { _ in fresh() }
        var pool: [(list: ItemList<Transaction>, model: [Transaction])] = [(ItemList(start), start)]
        for step in 0..<600 {
            var (list, model) = rng.pick(pool)
            let n = model.count
            let op = rng.int(0...13)
            switch op {
            case 0:
                let e = fresh()
                list.append(e)
                model.append(e)
            case 1:
                let i = rng.int(0...n)
                let e = fresh()
                list.insert(e, at: i)
                model.insert(e, at: i)
            case 2 where n > 0:
                let i = rng.int(0...(n - 1))
                list.remove(at: i)
                model.remove(at: i)
            case 3 where n > 0:
                let i = rng.int(0...(n - 1))
                let e = fresh()
                list[i] = e
                model[i] = e
            case 4:
                let a = rng.int(0...n)
                let b = rng.int(a...min(n, a + 140))
                let new = (0..<rng.int(0...140)).map { _ in fresh() }
                list.replaceSubrange(a..<b, with: new)
                model.replaceSubrange(a..<b, with: new)
            case 5 where n > 0:
                // Down to empty, or nearly.
                let k = rng.int(max(0, n - 2)...n)
                list.removeLast(k)
                model.removeLast(k)
            case 6 where n > 0:
                let m = rng.int(2...7)
                list.removeAll { Int($0.amount.minorUnits) % m == 0 }
                model.removeAll { Int($0.amount.minorUnits) % m == 0 }
            case 7:
                // The same storage in new chunk objects.
                list = ItemList(list.array)
            case 8:
                list.buildKeyFilters()
            case 9 where n > 0:
                // Remove and put back elsewhere: the same element at another offset.
                let i = rng.int(0...(n - 1))
                let e = list.remove(at: i)
                model.remove(at: i)
                let j = rng.int(0...(n - 1))
                list.insert(e, at: j)
                model.insert(e, at: j)
            case 10 where n > 1:
                let i = rng.int(0...(n - 1))
                let j = rng.int(0...(n - 1))
                list.swapAt(i, j)
                model.swapAt(i, j)
            case 11:
                list.removeAll()
                model.removeAll()
            case 12 where n > 0:
                // Set an element to itself.
                let i = rng.int(0...(n - 1))
                list[i] = list[i]
            default:
                let more = (0..<rng.int(0...200)).map { _ in fresh() }
                list.append(contentsOf: more)
                model.append(contentsOf: more)
            }
            #expect(Array(list) == model, "seed \(seed) step \(step) op \(op): list differs from its model")
            for other in pool {
                Self.checkClaim(list, model, other.list, other.model, "seed \(seed) step \(step) op \(op)")
            }
            if pool.count < 12 { pool.append((list, model)) } else { pool[rng.int(0...11)] = (list, model) }
        }
    }

    /// A list and its copy after a change at each place of a long list made whole: the ends
    /// claimed stop at the change, and cover at least every chunk the change did not copy.
    @Test func sharedEndsStopAtTheChangeWhereverItIs() {
        let rows = (0..<700).map { Self.row($0) }
        let base = ItemList(rows)
        for i in [0, 1, 63, 64, 65, 127, 128, 129, 350, 698, 699] {
            var copy = base
            var model = rows
            let e = Self.row(10_000 + i)
            copy[i] = e
            model[i] = e
            Self.checkClaim(base, rows, copy, model, "replace at \(i)")
            let (p, s) = base.sharedEnds(with: copy)
            // A lower bound, in whole chunks of 64: never past the change, never short of the
            // chunk the change copied.
            let chunkStart = i / 64 * 64
            let chunkEnd = min(chunkStart + 64, 700)
            #expect(p <= i && s <= 699 - i, "replace at \(i): \(p), \(s)")
            #expect(p >= chunkStart && s >= 700 - chunkEnd, "replace at \(i): \(p), \(s)")
            var removed = base
            removed.remove(at: i)
            var m2 = rows
            m2.remove(at: i)
            Self.checkClaim(base, rows, removed, m2, "remove at \(i)")
        }
    }

    /// The balanced cut: the fewest chunks of at most 64, sizes differing by one at most, none
    /// empty, elements in order.
    @Test func cutIsBalancedForEveryCount() {
        for n in 0...400 {
            let rows = (0..<n).map { Self.row($0) }
            let pieces = ItemList<Transaction>.cut(rows)
            #expect(pieces.count == (n + 63) / 64, "\(n)")
            let sizes = pieces.map { $0.items.count }
            #expect(sizes.allSatisfy { $0 >= 1 && $0 <= 64 }, "\(n): \(sizes)")
            #expect((sizes.max() ?? 0) - (sizes.min() ?? 0) <= 1, "\(n): \(sizes)")
            #expect(pieces.flatMap { Array($0.items) } == rows, "\(n)")
        }
    }

    // MARK: - insertionIndex

    /// The old search: linearly from the end.
    static func linear(_ t: Transaction, _ list: [Transaction]) -> Int {
        var i = list.endIndex
        while i > 0, UserRecord.inOrder(t, before: list[i - 1]) { i -= 1 }
        return i
    }

    static func txn(_ id: String, _ ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!))
    }

    /// On every sorted list of 0 to 70 transactions with many equal times (ties broken by id
    /// bytes, ids with shared prefixes and non-ASCII bytes), and at every place, the galloping
    /// search gives the old linear search's place.
    @Test func gallopingGivesTheLinearPlaceOnSortedLists() {
        var rng = SeededRandom(seed: 42)
        let ids = ["", "a", "a\u{0}", "ab", "b", "\u{E9}", "e\u{301}", "z", "Z", "10", "9"]
        for size in 0...70 {
            for _ in 0..<6 {
                var list = (0..<size).map { k in
                    Self.txn(rng.pick(ids) + "\(rng.int(0...3))", Int64(rng.int(0...4)))
                }
                list.sort { UserRecord.inOrder($0, before: $1) }
                let itemList = ItemList(list)
                var probes = list
                for _ in 0..<8 {
                    probes.append(Self.txn(rng.pick(ids) + "\(rng.int(0...4))", Int64(rng.int(-1...5))))
                }
                for t in probes {
                    let got = UserRecord.insertionIndex(of: t, in: itemList)
                    #expect(
                        got == Self.linear(t, list), "size \(size): \(t.id)@\(t.time.millisecondsSince1970)")
                }
            }
        }
    }

    /// Equal times and equal ids (a list built, not upserted): the place is after every equal one,
    /// as the linear search put it.
    @Test func equalTimesAndEqualIds() {
        for n in 0...9 {
            let list = (0..<n).map { _ in Self.txn("same", 5) }
            let t = Self.txn("same", 5)
            #expect(UserRecord.insertionIndex(of: t, in: ItemList(list)) == n, "\(n)")
            #expect(UserRecord.insertionIndex(of: Self.txn("samd", 5), in: ItemList(list)) == 0, "\(n)")
            #expect(UserRecord.insertionIndex(of: Self.txn("samf", 5), in: ItemList(list)) == n, "\(n)")
        }
    }

    /// Unsorted input (a record built or decoded in any order): the search ends, with a place in
    /// the list, for every list of up to 40 and every probe.
    @Test func unsortedInputEndsWithAPlaceInTheList() {
        var rng = SeededRandom(seed: 7)
        for size in 0...40 {
            for _ in 0..<20 {
                let list = (0..<size).map { _ in Self.txn("t\(rng.int(0...9))", Int64(rng.int(0...9))) }
                let t = Self.txn("t\(rng.int(0...9))", Int64(rng.int(-1...10)))
                let i = UserRecord.insertionIndex(of: t, in: ItemList(list))
                #expect(i >= 0 && i <= size)
                // Whatever the order, the place found is a boundary of the predicate there.
                if i < size { #expect(UserRecord.inOrder(t, before: list[i])) }
                if i > 0 { #expect(!UserRecord.inOrder(t, before: list[i - 1])) }
            }
        }
    }

    /// Upserts in random order keep the transactions sorted, as the old search did.
    @Test func upsertsInAnyOrderKeepTheListSorted() throws {
        var rng = SeededRandom(seed: 99)
        var record = UserRecord(userID: "u", revision: 0, createdAt: Timestamp(millisecondsSince1970: 0))
        var model: [Transaction] = []
        for k in 0..<1500 {
            let t = Self.txn("id\(rng.int(0...100_000))-\(k)", Int64(rng.chance(0.8) ? k : rng.int(0...k)))
            try record.upsert(t)
            model.insert(t, at: Self.linear(t, model))
        }
        #expect(Array(record.transactions) == model)
    }
}
