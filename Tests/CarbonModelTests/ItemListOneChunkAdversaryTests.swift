import CarbonStoreTestSupport
import Testing

@testable import CarbonModel

/// Adversarial probes of the change inside one chunk (`replaceInOneChunk`): long random runs
/// against `Array` as the model, biased to changes that stay inside one chunk (the same keys
/// removed and added again, keys replaced in place, ranges at chunk boundaries); the chunks'
/// filters checked from inside (a filter must never miss a key its chunk holds); copies taken
/// between changes, held by other tasks, and slices of one array shared by several chunks; what
/// `sharedEnds(with:)` claims and covers; and whether a chunk no other list shares is changed in
/// place, as the change claims.
@Suite struct ItemListOneChunkAdversaryTests {
    typealias List = ItemList<Transaction>
    static let eur = CurrencyCode("EUR")!
    static var chunkSize: Int { List.chunkSize }

    /// A reproducible generator (the test support's SplitMix64): every failure message carries
    /// its seed.
    typealias Rng = SeededRandom

    static func item(_ key: String, _ variant: Int) -> Transaction {
        Transaction(
            id: key, time: Timestamp(millisecondsSince1970: Int64(variant)),
            amount: Money(minorUnits: Int64(variant), currency: eur))
    }

    /// Few enough keys that the same key comes back often (removed, then added again), plus keys
    /// that differ from one another only in their bytes.
    static let keyPool: [String] = (0..<120).map { "k-\($0)" } + ItemListAdversaryTests.awkwardKeys

    // MARK: - Checks

    /// The list's insides: no empty chunk, `ends` the running sum of the chunks' counts, and every
    /// key of a chunk that has a filter in its filter. Returns false (after recording) on the first
    /// fault.
    @discardableResult
    static func checkInsides(
        _ list: List, _ note: @autoclosure () -> String, filters: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        guard list.ends.count == list.chunks.count else {
            Issue.record(
                "\(note()): \(list.ends.count) ends for \(list.chunks.count) chunks",
                sourceLocation: sourceLocation)
            return false
        }
        var end = 0
        for (k, chunk) in list.chunks.enumerated() {
            if chunk.items.isEmpty {
                Issue.record("\(note()): chunk \(k) is empty", sourceLocation: sourceLocation)
                return false
            }
            end += chunk.items.count
            if list.ends[k] != end {
                Issue.record(
                    "\(note()): ends[\(k)] is \(list.ends[k]), the chunks hold \(end)",
                    sourceLocation: sourceLocation)
                return false
            }
            if filters, let filter = chunk.filter {
                for item in chunk.items where !filter.mayContain(KeyFilter.hash(item.itemKey)) {
                    Issue.record(
                        "\(note()): chunk \(k)'s filter misses key \(Array(item.itemKey.utf8)) that the chunk holds",
                        sourceLocation: sourceLocation)
                    return false
                }
            }
        }
        return true
    }

    /// The list holds the model's elements in order by every way of reading it, and finds every key
    /// where a byte-exact scan of the model finds it, and none of `absent`.
    @discardableResult
    static func check(
        _ list: List, _ model: [Transaction], _ note: @autoclosure () -> String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        guard checkInsides(list, note(), sourceLocation: sourceLocation) else { return false }
        guard list.count == model.count, list.endIndex == model.count, list.isEmpty == model.isEmpty else {
            Issue.record(
                "\(note()): count \(list.count), the model has \(model.count)", sourceLocation: sourceLocation
            )
            return false
        }
        guard Array(list) == model else {
            let i = Array(zip(list, model)).firstIndex { $0.0 != $0.1 } ?? Swift.min(list.count, model.count)
            Issue.record("\(note()): iteration differs at \(i)", sourceLocation: sourceLocation)
            return false
        }
        for i in model.indices where list[i] != model[i] {
            Issue.record(
                "\(note()): list[\(i)] is \(list[i].id), the model has \(model[i].id)",
                sourceLocation: sourceLocation)
            return false
        }
        var seen = Set<[UInt8]>()
        for (i, t) in model.enumerated() where seen.insert(Array(t.id.utf8)).inserted {
            let found = list.firstIndex(ofKey: t.id)
            if found != i {
                Issue.record(
                    "\(note()): key \(Array(t.id.utf8)) first at \(i), found at \(String(describing: found))",
                    sourceLocation: sourceLocation)
                return false
            }
        }
        for key in keyPool where !seen.contains(Array(key.utf8)) {
            if let found = list.firstIndex(ofKey: key) {
                Issue.record(
                    "\(note()): absent key \(Array(key.utf8)) found at \(found)",
                    sourceLocation: sourceLocation)
                return false
            }
        }
        return true
    }

    // MARK: - Random runs against Array

    /// How a run's list starts.
    enum Start: Int, CaseIterable, Sendable {
        case empty, wholeSmall, wholeSmallFiltered, wholeMid, wholeLong, cutFiltered, appended
    }

    static func start(_ how: Start, rng: inout Rng, serial: inout Int) -> (List, [Transaction]) {
        func rows(_ n: Int) -> [Transaction] {
            (0..<n).map { _ in
                serial += 1
                return item(keyPool[rng.int(0...(keyPool.count - 1))], serial)
            }
        }
        switch how {
        case .empty: return (List(), [])
        case .wholeSmall:
            let m = rows(40)
            return (List(m), m)
        case .wholeSmallFiltered:
            let m = rows(64)
            var l = List(m)
            l.buildKeyFilters()
            return (l, m)
        case .wholeMid:
            let m = rows(100)
            return (List(m), m)
        case .wholeLong:
            let m = rows(700)
            return (List(m), m)
        case .cutFiltered:
            let m = rows(300)
            var l = List(m)
            l[150] = l[150]  // cut in chunks of 64 (slices of one storage)
            l.buildKeyFilters()
            return (l, m)
        case .appended:
            let m = rows(200)
            var l = List()
            for t in m { l.append(t) }
            return (l, m)
        }
    }

    /// Thousands of random changes, most of them inside one chunk, on the list and on copies of it
    /// taken along the way (and changed in turn): after each, the list's insides hold; every few,
    /// the list and every copy are read whole against their models.
    @Test(arguments: Start.allCases)
    func randomChangesMatchAnArray(start: Start) {
        for round in 0..<2 {
            let seed = UInt64(start.rawValue) &* 0x1_0001 &+ UInt64(round) &* 977 &+ 5
            run(seed: seed, start: start, steps: 1500)
        }
    }

    func run(seed: UInt64, start how: Start, steps: Int) {
        var rng = Rng(seed: seed)
        var serial = 0
        var (list, model) = Self.start(how, rng: &rng, serial: &serial)
        var copies: [(list: List, model: [Transaction])] = []
        func newItem(_ key: String) -> Transaction {
            serial += 1
            return Self.item(key, serial)
        }
        for step in 0..<steps {
            let note = "seed \(seed) (\(how)) step \(step)"
            let op = Self.change(&list, &model, rng: &rng, newItem: newItem)
            guard Self.checkInsides(list, "\(note) op \(op)", filters: step % 3 == 0) else { return }
            if rng.chance(4) {
                // A copy, taken between two changes (in place or not) of the list.
                if copies.count < 5 {
                    copies.append((list, model))
                } else {
                    copies[rng.int(0...4)] = (list, model)
                }
            }
            if !copies.isEmpty && rng.chance(5) {
                // A copy changes (before or after the list does).
                let k = rng.int(0...(copies.count - 1))
                var (copy, copyModel) = copies[k]
                Self.change(&copy, &copyModel, rng: &rng, newItem: newItem)
                copies[k] = (copy, copyModel)
            }
            if step % 25 == 0 || step == steps - 1 {
                guard Self.check(list, model, "\(note) op \(op)") else { return }
                for (k, copy) in copies.enumerated() {
                    guard Self.check(copy.list, copy.model, "\(note): copy \(k)") else { return }
                    // What the list and the copy are said to share (by storage address, after
                    // changes in place on either side) is equal, and `==` is the models'.
                    let (p, q) = list.sharedEnds(with: copy.list)
                    let limit = Swift.min(model.count, copy.model.count)
                    guard p >= 0, q >= 0, p + q <= limit,
                        Array(model[..<p]) == Array(copy.model[..<p]),
                        Array(model.suffix(q)) == Array(copy.model.suffix(q))
                    else {
                        Issue.record(
                            "\(note): copy \(k): sharedEnds \(p)+\(q) of \(limit) claims unequal elements")
                        return
                    }
                    #expect((list == copy.list) == (model == copy.model), "\(note): copy \(k): ==")
                }
            }
        }
    }

    /// One random change to `list` and the same to `model`; returns which.
    @discardableResult
    static func change(
        _ list: inout List, _ model: inout [Transaction], rng: inout Rng, newItem: (String) -> Transaction
    ) -> Int {
        let n = model.count
        // A position at a chunk's boundary or inside a chunk, as often as anywhere.
        func position() -> Int {
            if n > 0, !list.ends.isEmpty, rng.chance(30) {
                return list.ends[rng.int(0...(list.ends.count - 1))] - (rng.chance(50) ? 0 : 1)
            }
            return rng.int(0...n)
        }
        func fresh() -> Transaction { newItem(keyPoolKey(&rng)) }
        func rows(_ k: Int) -> [Transaction] { (0..<k).map { _ in fresh() } }
        // Growing lists are pulled back towards a few hundred elements.
        let tooLong = n > 400
        let op = rng.int(0...17)
        switch op {
        case 0 where !tooLong:
            let i = position()
            let t = fresh()
            list.insert(t, at: i)
            model.insert(t, at: i)
        case 1 where n > 0, 2 where n > 0:
            let i = Swift.min(position(), n - 1)
            #expect(list.remove(at: i) == model.remove(at: i))
        case 3 where n > 0:
            // A range inside one chunk, replaced by 0 to what fills the chunk (and a little more).
            let (c, o) = list.locate(rng.int(0...(n - 1)))
            let size = list.chunks[c].items.count
            let a = (c == 0 ? 0 : list.ends[c - 1]) + o
            let b = a + rng.int(0...(size - o))
            let room = chunkSize - size + (b - a)
            let new = rows(rng.int(0...Swift.max(0, room + (rng.chance(20) ? 3 : 0))))
            list.replaceSubrange(a..<b, with: new)
            model.replaceSubrange(a..<b, with: new)
        case 4 where n > 0:
            // The element replaced in place by another key, by either way.
            let i = rng.int(0...(n - 1))
            let t = fresh()
            if rng.chance(50) { list[i] = t } else { list.replaceSubrange(i..<(i + 1), with: [t]) }
            model[i] = t
        case 5 where n > 1:
            // A key removed, and added again elsewhere in the same chunk (or in another).
            let i = rng.int(0...(n - 1))
            let key = model[i].id
            list.remove(at: i)
            model.remove(at: i)
            let j = Swift.min(n - 1, Swift.max(0, i + rng.int(-8...8)))
            let t = newItem(key)
            list.insert(t, at: j)
            model.insert(t, at: j)
        case 6 where n > 0:
            // The same key put back in place with new values.
            let i = rng.int(0...(n - 1))
            let t = newItem(model[i].id)
            list.replaceSubrange(i..<(i + 1), with: [t])
            model[i] = t
        case 7 where !tooLong:
            let new = rows(rng.chance(70) ? 1 : rng.int(0...70))
            list.append(contentsOf: new)
            model.append(contentsOf: new)
        case 8 where rng.chance(15):
            let key = keyPoolKey(&rng)
            let parity = rng.int(0...3)
            list.removeAll { $0.id.isByteEqual(to: key) || $0.amount.minorUnits % 17 == Int64(parity) }
            model.removeAll { $0.id.isByteEqual(to: key) || $0.amount.minorUnits % 17 == Int64(parity) }
        case 9:
            // Nothing replaced by nothing, at a boundary.
            let i = position()
            list.replaceSubrange(i..<i, with: [])
            model.replaceSubrange(i..<i, with: [])
        case 10 where n > 0:
            // The last element: replaced, or removed.
            let t = fresh()
            if rng.chance(50) {
                list.replaceSubrange((n - 1)..<n, with: [t])
                model.replaceSubrange((n - 1)..<n, with: [t])
            } else {
                list.removeLast()
                model.removeLast()
            }
        case 11 where rng.chance(5):
            // The whole list.
            let new = rows(rng.int(0...90))
            list.replaceSubrange(0..<n, with: new)
            model.replaceSubrange(0..<n, with: new)
        case 12:
            list.buildKeyFilters()
        case 13 where n > 0:
            // A range across a chunk boundary.
            let a = rng.int(0...(n - 1))
            let b = rng.int(a...Swift.min(n, a + 70))
            let new = rows(rng.int(0...(tooLong ? 10 : 70)))
            list.replaceSubrange(a..<b, with: new)
            model.replaceSubrange(a..<b, with: new)
        case 14 where rng.chance(5):
            // Made whole again (one chunk, no filter), or cut.
            if rng.chance(50) { list = List(model) } else if n > 0 { list[n / 2] = list[n / 2] }
        case 15 where n > 0:
            // The same element set again (no change), or an element moved.
            let i = rng.int(0...(n - 1))
            let j = rng.int(0...(n - 1))
            list.swapAt(i, j)
            model.swapAt(i, j)
        case 16 where n > 0:
            let i = rng.int(0...(n - 1))
            let k = rng.int(0...Swift.min(3, n - i))
            list.removeSubrange(i..<(i + k))
            model.removeSubrange(i..<(i + k))
        default:
            // Canonically equivalent keys with other bytes, replaced in place.
            if n > 0 {
                let i = rng.int(0...(n - 1))
                let key = model[i].id.isByteEqual(to: "caf\u{E9}") ? "cafe\u{301}" : "caf\u{E9}"
                let t = newItem(key)
                list[i] = t
                model[i] = t
            }
        }
        return op
    }

    static func keyPoolKey(_ rng: inout Rng) -> String { keyPool[rng.int(0...(keyPool.count - 1))] }

    // MARK: - Keys

    /// One chunk churned for long: the same few keys removed and added again, replaced in place by
    /// other keys and by themselves, many more times than the filter is sized for. Every key held is
    /// found where it first is, and none that left, after every change; with a filter, and without.
    @Test(arguments: [false, true])
    func oneChunkChurnedForLongFindsExactlyItsKeys(filtered: Bool) {
        let seed: UInt64 = filtered ? 91 : 92
        var rng = Rng(seed: seed)
        var serial = 0
        let keys = (0..<12).map { "churn-\($0)" } + ["caf\u{E9}", "cafe\u{301}", "", "a\u{0}"]
        var model = (0..<30).map { n -> Transaction in
            serial += 1
            return Self.item(keys[n % keys.count], serial)
        }
        // In chunks with filters (slices of one array, cut and filtered), or one chunk of 50 made
        // whole, whose filter stays nil.
        model += (0..<(filtered ? 200 : 20)).map { Self.item("far-\($0)", $0) }
        var list = List(model)
        if filtered {
            list[100] = list[100]
            list.buildKeyFilters()
        }
        for step in 0..<2000 {
            let note = "seed \(seed) step \(step)"
            let i = rng.int(0...25)
            serial += 1
            let t = Self.item(keys[rng.int(0...(keys.count - 1))], serial)
            switch rng.int(0...3) {
            case 0:
                list.remove(at: i)
                model.remove(at: i)
                let j = rng.int(0...25)
                list.insert(t, at: j)
                model.insert(t, at: j)
            case 1:
                list[i] = t
                model[i] = t
            case 2:
                list.replaceSubrange(i..<(i + 2), with: [t])
                model.replaceSubrange(i..<(i + 2), with: [t])
                list.insert(model[0], at: 0)
                model.insert(model[0], at: 0)
            default:
                list.replaceSubrange(i..<(i + 1), with: [t, model[i]])
                model.replaceSubrange(i..<(i + 1), with: [t, model[i]])
                list.remove(at: i + 1)
                model.remove(at: i + 1)
            }
            guard Self.checkInsides(list, note) else { return }
            #expect((list.chunks[0].filter != nil) == filtered, "\(note): the chunk's filter")
            for key in keys {
                let expected = model.firstIndex { $0.id.isByteEqual(to: key) }
                let found = list.firstIndex(ofKey: key)
                guard found == expected else {
                    Issue.record(
                        "\(note): key \(Array(key.utf8)) found at \(String(describing: found)), expected \(String(describing: expected))"
                    )
                    return
                }
            }
        }
        Self.check(list, model, "seed \(seed) end")
    }

    /// A filter whose count has reached its capacity exactly, then one key more, by each way a
    /// one-chunk change adds keys (one, several, none): every key is found, and none that left.
    @Test func aFilterAtItsCapacityIsRebuiltNotOverfilled() {
        for extra in 0...3 {
            var list = List((0..<40).map { Self.item("c-\($0)", $0) })
            list.buildKeyFilters()
            var model = Array(list)
            var f = list.chunks[0].filter!
            var serial = 1000
            // Fill the filter to exactly its capacity with replacements of one element.
            while f.added < f.capacity - extra {
                serial += 1
                let t = Self.item("c-new-\(serial)", serial)
                list.replaceSubrange(6..<7, with: [t])
                model[6] = t
                f = list.chunks[0].filter!
            }
            for k in 0...(extra + 2) {
                serial += 1
                let rows = (0..<k).map { Self.item("c-more-\(serial)-\($0)", serial) }
                list.replaceSubrange(10..<11, with: rows)
                model.replaceSubrange(10..<11, with: rows)
                Self.check(list, model, "extra \(extra) add \(k)")
                let g = list.chunks[0].filter!
                #expect(
                    g.added <= g.capacity,
                    "extra \(extra) add \(k): \(g.added) keys in a filter for \(g.capacity)")
            }
        }
    }

    // MARK: - Copies

    /// A copy taken between two changes in place of a chunk that no other list shares keeps what
    /// it had, whoever changes next; the same for copies of the elements (`array`), for iterators
    /// made before the change, and for a copy that then changes the same chunk.
    @Test func copiesTakenBetweenInPlaceChangesStayAsTheyWere() {
        for whole in [true, false] {
            var list = List((0..<50).map { Self.item("p-\($0)", $0) })
            if !whole { list.buildKeyFilters() }
            var model = Array(list)
            list[3] = Self.item("p-x", 1)  // the chunk is now this list's alone
            model[3] = Self.item("p-x", 1)
            list.replaceSubrange(4..<5, with: [Self.item("p-y", 2)])
            model[4] = Self.item("p-y", 2)
            let copy = list
            let copyModel = model
            let elements = list.array
            var iterator = list.makeIterator()
            list.replaceSubrange(4..<5, with: [Self.item("p-z", 3)])
            model[4] = Self.item("p-z", 3)
            list.remove(at: 0)
            model.remove(at: 0)
            var other = copy
            other.replaceSubrange(4..<5, with: [Self.item("p-w", 4)])
            var otherModel = copyModel
            otherModel[4] = Self.item("p-w", 4)
            list.insert(Self.item("p-v", 5), at: 7)
            model.insert(Self.item("p-v", 5), at: 7)
            var iterated: [Transaction] = []
            while let t = iterator.next() { iterated.append(t) }
            Self.check(list, model, "whole \(whole): list")
            Self.check(copy, copyModel, "whole \(whole): copy")
            Self.check(other, otherModel, "whole \(whole): the copy changed")
            #expect(elements == copyModel, "whole \(whole): array taken before")
            #expect(iterated == copyModel, "whole \(whole): iterator made before")
            #expect(copy.firstIndex(ofKey: "p-z") == nil && copy.firstIndex(ofKey: "p-y") == 4)
            #expect(list.firstIndex(ofKey: "p-y") == nil && list.firstIndex(ofKey: "p-z") == 3)
        }
    }

    /// A list made from one array and cut: its chunks are slices of that array's storage. Changes
    /// inside one of them, on the list and on a copy, in any order, leave the other chunks, the
    /// copy, and the array as they were.
    @Test func slicesOfOneArrayChangedInTurn() {
        let source = (0..<640).map { Self.item("s-\($0)", $0) }
        var list = List(source)
        list[320] = list[320]  // ten chunks, slices of `source`'s storage
        let copy = list
        var model = source
        var copyChanged = copy
        var copyModel = source
        var rng = Rng(seed: 640)
        for step in 0..<400 {
            let t = Self.item("s-new-\(step)", step)
            let i = rng.int(0...(model.count - 1))
            if step % 2 == 0 {
                list.replaceSubrange(i..<(i + 1), with: [t])
                model[i] = t
            } else {
                let j = rng.int(0...(copyModel.count - 1))
                copyChanged.insert(t, at: j)
                copyModel.insert(t, at: j)
                copyChanged.remove(at: (j + 1) % copyModel.count)
                copyModel.remove(at: (j + 1) % copyModel.count)
            }
            if step % 50 == 0 {
                Self.check(list, model, "step \(step): list")
                Self.check(copyChanged, copyModel, "step \(step): changed copy")
            }
        }
        Self.check(list, model, "list")
        Self.check(copyChanged, copyModel, "changed copy")
        Self.check(copy, source, "untouched copy")
        #expect(source.enumerated().allSatisfy { $0.element.id == "s-\($0.offset)" }, "the array itself")
    }

    /// Copies handed to other tasks, each changed inside its chunks while the list changes too:
    /// each ends with its own changes only.
    @Test func copiesInOtherTasksStayTheirOwn() async {
        var list = List((0..<300).map { Self.item("q-\($0)", $0) })
        list[150] = list[150]
        list.buildKeyFilters()
        let shared = list
        let model = Array(list)
        let results = await withTaskGroup(of: Bool.self) { group in
            for task in 0..<4 {
                group.addTask {
                    var mine = shared
                    var mineModel = model
                    var rng = Rng(seed: UInt64(task) &+ 7000)
                    var serial = task * 1_000_000
                    for _ in 0..<600 {
                        Self.change(&mine, &mineModel, rng: &rng) { key in
                            serial += 1
                            return Self.item(key, serial)
                        }
                    }
                    return Self.check(mine, mineModel, "task \(task) (seed \(UInt64(task) &+ 7000))")
                }
            }
            var all: [Bool] = []
            for await ok in group { all.append(ok) }
            return all
        }
        #expect(results == [true, true, true, true])
        Self.check(shared, model, "the list every task copied")
    }

    // MARK: - sharedEnds

    /// A list and a copy changed in one place: `sharedEnds` claims only equal elements, and when the
    /// change lies inside one chunk of a list whose chunks are at most `chunkSize` long, it leaves
    /// out at most that chunk.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func sharedEndsAfterOneChangeInsideAChunk(seed: UInt64) {
        var rng = Rng(seed: seed &* 31)
        var serial = 0
        var (base, baseModel) = Self.start(
            seed % 2 == 0 ? .cutFiltered : .appended, rng: &rng, serial: &serial)
        for trial in 0..<400 {
            let note = "seed \(seed) trial \(trial)"
            var changed = base
            var model = baseModel
            let n = model.count
            guard n > 0 else { return }
            let chunked = base.chunks.allSatisfy { $0.items.count <= Self.chunkSize }
            // A range inside one chunk (or empty, at a boundary), replaced by up to 5 elements.
            let (c, o) = base.locate(rng.int(0...(n - 1)))
            let size = base.chunks[c].items.count
            let a = (c == 0 ? 0 : base.ends[c - 1]) + o
            let b = a + rng.int(0...Swift.min(3, size - o))
            let rows = (0..<rng.int(0...5)).map { k -> Transaction in
                serial += 1
                return Self.item("e-\(serial)", serial)
            }
            changed.replaceSubrange(a..<b, with: rows)
            model.replaceSubrange(a..<b, with: rows)
            guard Self.checkInsides(changed, note) else { return }
            let (p, s) = base.sharedEnds(with: changed)
            let limit = Swift.min(n, model.count)
            guard p >= 0, s >= 0, p + s <= limit else {
                Issue.record("\(note): \(p) + \(s) shared of \(limit)")
                return
            }
            #expect(Array(baseModel[..<p]) == Array(model[..<p]), "\(note): prefix \(p)")
            #expect(Array(baseModel.suffix(s)) == Array(model.suffix(s)), "\(note): suffix \(s)")
            if chunked {
                #expect(
                    n - (p + s) <= Self.chunkSize,
                    "\(note): \(n - p - s) of \(n) not shared after a change in chunk \(c)")
            }
            // Every so often the change is kept, and the next ones start from it.
            if rng.chance(30) {
                base = changed
                baseModel = model
            }
            if model.count < 100 {
                base.append(contentsOf: rows)
                baseModel.append(contentsOf: rows)
            }
        }
    }

    // MARK: - In place

    /// Where a chunk's elements are stored.
    static func storage(_ list: List, _ c: Int) -> UnsafePointer<Transaction>? {
        list.chunks[c].items.withUnsafeBufferPointer { $0.baseAddress }
    }

    /// A change inside a chunk that no other list shares, and whose elements no other list or
    /// array shares, changes them where they are: the claim of the one-chunk change ("its elements
    /// are copied only if another list shares them"). Replacing one element by one, or removing
    /// one, must keep the chunk's storage, and adding a key to a filter with room must keep the
    /// filter's.
    @Test(arguments: [0, 1, 2])
    func aChunkNoOneSharesIsChangedWhereItIs(shape: Int) {
        // A list of 40 made whole (with a filter, or not), or a chunk of a list that was cut.
        var model = (0..<(shape == 2 ? 500 : 40)).map { Self.item("i-\($0)", $0) }
        var list = List(model)
        if shape == 2 { list[100] = list[100] }
        if shape == 1 { list.buildKeyFilters() }
        let at = shape == 2 ? 100 : 10
        // A first change gives the chunk storage of its own.
        list.remove(at: at)
        model.remove(at: at)
        let c = list.locate(at).chunk
        #expect(isKnownUniquelyReferenced(&list.chunks[c]))
        // Each address is compared with the one just before the change: storage copied is at
        // another address (the old one is alive while it is copied).
        var before = Self.storage(list, c)
        let words = list.chunks[c].filter?.words.withUnsafeBufferPointer { $0.baseAddress }
        list.replaceSubrange((at + 1)..<(at + 2), with: [Self.item("i-new", 1)])
        model[at + 1] = Self.item("i-new", 1)
        #expect(
            Self.storage(list, c) == before, "shape \(shape): a replacement of one by one copied the chunk")
        before = Self.storage(list, c)
        list.remove(at: at + 2)
        model.remove(at: at + 2)
        #expect(Self.storage(list, c) == before, "shape \(shape): a removal copied the chunk")
        if shape == 1 {
            #expect(
                list.chunks[c].filter?.words.withUnsafeBufferPointer { $0.baseAddress } == words,
                "the filter's words were copied to add one key")
        }
        Self.check(list, model, "shape \(shape)")
    }
}

extension SeededRandom {
    /// True `percent` times in 100.
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }
}
