import CarbonModel
import Foundation
import Testing

@testable import CarbonModel

/// Adversarial probes of `ItemList` against `Array` as the model: every operation the collection
/// protocols give it (their defaults included), keys found through the chunks' filters, copies
/// that must never change, copies mutated by many tasks at once, and `isByteEqual`.
@Suite struct ItemListAdversaryTests {
    static let eur = CurrencyCode("EUR")!

    /// Keys that stress the filters and byte-exact matching: empty, small, long (not a small
    /// string), non-ASCII, canonically equivalent spellings with other bytes, NUL bytes.
    static let awkwardKeys: [String] = [
        "", "a", "caf\u{E9}", "cafe\u{301}", "\u{1F600}", "\u{1F600}\u{FE0F}", "a\u{0}", "a\u{0}\u{0}",
        String(repeating: "k", count: 15), String(repeating: "k", count: 16),
        String(repeating: "long-key-\u{E9}", count: 20), String(repeating: "long-key-e\u{301}", count: 20),
        "\u{212B}", "\u{C5}", "A\u{30A}",  // angstrom sign, A-ring, A + combining ring
    ]

    static func item(_ id: String, _ variant: Int = 0) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: Int64(variant)),
            amount: Money(minorUnits: Int64(variant), currency: eur))
    }

    /// A string with the same bytes as `s` in storage of its own (not sharing `s`'s).
    static func fresh(_ s: String) -> String { String(decoding: Array(s.utf8), as: UTF8.self) }

    struct Rng: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// The list holds the model's elements in order, by every way of reading it, and every key of
    /// the model (and the awkward keys) is found where a byte-exact scan of the model finds it.
    static func check(
        _ list: ItemList<Transaction>, _ model: [Transaction], _ note: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(list.count == model.count, "\(note): count", sourceLocation: sourceLocation)
        #expect(list.isEmpty == model.isEmpty, "\(note): isEmpty", sourceLocation: sourceLocation)
        #expect(list.endIndex == model.count, "\(note): endIndex", sourceLocation: sourceLocation)
        #expect(Array(list) == model, "\(note): iteration", sourceLocation: sourceLocation)
        #expect(list.array == model, "\(note): array", sourceLocation: sourceLocation)
        #expect(
            list.elements(in: 0..<list.count) == model, "\(note): elements(in:)",
            sourceLocation: sourceLocation)
        var indexed: [Transaction] = []
        for i in 0..<Swift.min(list.count, model.count) { indexed.append(list[i]) }
        #expect(
            indexed == Array(model.prefix(indexed.count)), "\(note): subscript",
            sourceLocation: sourceLocation)
        if let contiguous = list.withContiguousStorageIfAvailable({ Array($0) }) {
            #expect(contiguous == model, "\(note): contiguous storage", sourceLocation: sourceLocation)
        }
        #expect(list == ItemList(model), "\(note): ==", sourceLocation: sourceLocation)
        #expect(
            list.hashValue == ItemList(model).hashValue, "\(note): hash", sourceLocation: sourceLocation)
        let keys = Set(model.map { ExactString($0.id) }).map(\.string) + awkwardKeys
        for key in keys {
            let expected = model.firstIndex { $0.id.isByteEqual(to: key) }
            #expect(
                list.firstIndex(ofKey: key) == expected, "\(note): key \(Array(key.utf8))",
                sourceLocation: sourceLocation)
            #expect(
                list.firstIndex(ofKey: fresh(key)) == expected, "\(note): key in other storage",
                sourceLocation: sourceLocation)
        }
    }

    // MARK: - removeAll(where:)

    struct Stop: Error {}

    /// A predicate that throws part-way must leave a list that is still a list: its count the
    /// number of elements it iterates, every index readable. (The chunks already filtered stay
    /// filtered; the list's positions must follow them.)
    @Test func aThrowingRemoveAllLeavesAConsistentList() {
        var list = ItemList((0..<300).map { Self.item("t-\($0)", $0) })
        list[150] = Self.item("t-150", 1)  // cut into chunks of 64
        var calls = 0
        #expect(throws: Stop.self) {
            try list.removeAll { t in
                calls += 1
                if calls > 200 { throw Stop() }
                return t.amount.minorUnits % 2 == 0
            }
        }
        let iterated = Array(list)
        #expect(list.count == iterated.count)
        #expect(list.array == iterated)
        for i in 0..<Swift.min(list.count, iterated.count) where list[i] != iterated[i] {
            Issue.record("position \(i) reads \(list[i].id), iteration gives \(iterated[i].id)")
            break
        }
        for (i, t) in iterated.enumerated() where list.firstIndex(ofKey: t.id) != i {
            Issue.record("key \(t.id) at \(i) found at \(String(describing: list.firstIndex(ofKey: t.id)))")
            break
        }
    }

    /// `removeAll(where:)` asks the predicate once per element, in order, as `Array` does: a
    /// predicate that counts (remove the first three) removes what it removes from an array.
    @Test(arguments: [1, 10, 200])
    func removeAllAsksOncePerElementInOrder(count: Int) {
        let model = (0..<count).map { Self.item("t-\($0)", $0) }
        var array = model
        var list = ItemList(model)
        var arrayCalls: [String] = []
        var listCalls: [String] = []
        var n = 0
        array.removeAll { t in
            arrayCalls.append(t.id)
            n += 1
            return n <= 3 || n % 7 == 0
        }
        n = 0
        list.removeAll { t in
            listCalls.append(t.id)
            n += 1
            return n <= 3 || n % 7 == 0
        }
        #expect(listCalls == arrayCalls)
        Self.check(list, array, "stateful removeAll over \(count)")
    }

    // MARK: - Every operation against Array

    /// How a list starts: made whole from an array (one chunk, no filter), built by appends, or
    /// cut by a change.
    enum Start: String, CaseIterable, Sendable { case whole, appended, cut, filtered }

    static func start(_ how: Start, _ model: [Transaction]) -> ItemList<Transaction> {
        switch how {
        case .whole: return ItemList(model)
        case .appended:
            var l = ItemList<Transaction>()
            for t in model { l.append(t) }
            return l
        case .cut:
            var l = ItemList(model)
            if !l.isEmpty { l[l.count / 2] = l[l.count / 2] }
            return l
        case .filtered:
            var l = ItemList(model)
            l.buildKeyFilters()
            return l
        }
    }

    @Test(arguments: Start.allCases, [0, 3, 64, 65, 129, 700])
    func everyCollectionOperationMatchesAnArray(start: Start, initial: Int) {
        var rng = Rng(state: UInt64(initial) &* 6151 &+ UInt64(start.rawValue.utf8.count))
        var serial = 0
        func newItem() -> Transaction {
            serial += 1
            let pick = Int.random(in: 0..<4, using: &rng)
            let key =
                pick == 0
                ? Self.awkwardKeys.randomElement(using: &rng)! : "n-\(serial)-\(pick == 1 ? "\u{E9}" : "")"
            return Self.item(key, serial)
        }
        var model = (0..<initial).map { _ in newItem() }
        var list = Self.start(start, model)
        var copies: [(ItemList<Transaction>, [Transaction])] = [(list, model)]
        for step in 0..<250 {
            if step % 23 == 0 { copies.append((list, model)) }
            let n = model.count
            let op = Int.random(in: 0..<26, using: &rng)
            switch op {
            case 0:
                let t = newItem()
                list.append(t)
                model.append(t)
            case 1:
                let i = Int.random(in: 0...n, using: &rng)
                let t = newItem()
                list.insert(t, at: i)
                model.insert(t, at: i)
            case 2 where n > 0:
                let i = Int.random(in: 0..<n, using: &rng)
                #expect(list.remove(at: i) == model.remove(at: i))
            case 3 where n > 0:
                let i = Int.random(in: 0..<n, using: &rng)
                let t = newItem()
                list[i] = t
                model[i] = t
            case 4 where n > 1:
                let i = Int.random(in: 0..<n, using: &rng)
                let j = Int.random(in: 0..<n, using: &rng)
                list.swapAt(i, j)
                model.swapAt(i, j)
            case 5:
                list.sort { $0.id.isBytewiseLess(than: $1.id) }
                model.sort { $0.id.isBytewiseLess(than: $1.id) }
            case 6:
                list.reverse()
                model.reverse()
            case 7:
                let m = Int.random(in: 2...5, using: &rng)
                let pl = list.partition { $0.time.millisecondsSince1970 % Int64(m) == 0 }
                let pm = model.partition { $0.time.millisecondsSince1970 % Int64(m) == 0 }
                #expect(pl == pm)
                // The order inside each part is unspecified: compare them as sets, then take the
                // list's order for the model.
                #expect(Set(list[..<pl]) == Set(model[..<pm]))
                #expect(Set(list[pl...]) == Set(model[pm...]))
                model = Array(list)
            case 8 where n > 0:
                #expect(list.removeFirst() == model.removeFirst())
            case 9 where n > 0:
                #expect(list.removeLast() == model.removeLast())
            case 10 where n > 2:
                let k = Int.random(in: 0...(n / 3), using: &rng)
                list.removeFirst(k)
                model.removeFirst(k)
                let k2 = Int.random(in: 0...(model.count / 3), using: &rng)
                list.removeLast(k2)
                model.removeLast(k2)
            case 11:
                let a = Int.random(in: 0...n, using: &rng)
                let b = Int.random(in: a...n, using: &rng)
                list.removeSubrange(a..<b)
                model.removeSubrange(a..<b)
            case 12:
                let a = Int.random(in: 0...n, using: &rng)
                let b = Int.random(in: a...Swift.min(n, a + 200), using: &rng)
                let rows = (0..<Int.random(in: 0...150, using: &rng)).map { _ in newItem() }
                list[a..<b] = ItemList(rows)[...]
                model[a..<b] = rows[...]
            case 13:
                let i = Int.random(in: 0...n, using: &rng)
                let rows = (0..<Int.random(in: 0...100, using: &rng)).map { _ in newItem() }
                list.insert(contentsOf: rows, at: i)
                model.insert(contentsOf: rows, at: i)
            case 14:
                let rows = (0..<Int.random(in: 0...70, using: &rng)).map { _ in newItem() }
                list += rows
                model += rows
            case 15:
                let m = Int.random(in: 2...4, using: &rng)
                let f: ItemList<Transaction> = list.filter { $0.time.millisecondsSince1970 % Int64(m) != 0 }
                #expect(Array(f) == model.filter { $0.time.millisecondsSince1970 % Int64(m) != 0 })
                #expect(list.map(\.id) == model.map(\.id))
                if step % 2 == 0 {
                    list = f
                    model = Array(f)
                }
            case 16:
                list.reserveCapacity(n + 100)
            case 17 where n > 1:
                // Sort a slice in place.
                let a = Int.random(in: 0..<n, using: &rng)
                let b = Int.random(in: a...n, using: &rng)
                list[a..<b].sort { $0.id.isBytewiseLess(than: $1.id) }
                model[a..<b].sort { $0.id.isBytewiseLess(than: $1.id) }
            case 18:
                let m = Int.random(in: 2...9, using: &rng)
                list.removeAll { $0.time.millisecondsSince1970 % Int64(m) == 1 }
                model.removeAll { $0.time.millisecondsSince1970 % Int64(m) == 1 }
            case 19:
                list.buildKeyFilters()
            case 20 where step % 40 == 0:
                let json = try! JSONEncoder().encode(list)
                #expect(try! JSONDecoder().decode([Transaction].self, from: json) == model)
                list = try! JSONDecoder().decode(ItemList<Transaction>.self, from: json)
            case 21 where step % 30 == 0:
                list.removeAll(keepingCapacity: Bool.random(using: &rng))
                model.removeAll()
            case 22:
                let other = ItemList(model)
                list = list + other
                model = model + model
                if model.count > 3000 {
                    list.removeSubrange(1500...)
                    model.removeSubrange(1500...)
                }
            case 23 where n > 0:
                // Replace a key in place with a canonically equivalent but byte-different one.
                let i = Int.random(in: 0..<n, using: &rng)
                var t = list[i]
                t.id = t.id.isByteEqual(to: "caf\u{E9}") ? "cafe\u{301}" : "caf\u{E9}"
                list[i] = t
                model[i] = t
            case 24 where n > 0:
                let i = Int.random(in: 0..<n, using: &rng)
                list.modifyChunkAt(i) { $0.id = Self.fresh($0.id) }
                model[i].id = Self.fresh(model[i].id)
            default:
                let t = newItem()
                list.append(contentsOf: [t, t])
                model.append(contentsOf: [t, t])
            }
            if step % 11 == 0 { Self.check(list, model, "\(start) \(initial) step \(step) op \(op)") }
        }
        Self.check(list, model, "\(start) \(initial) end")
        for (k, (copy, snapshot)) in copies.enumerated() {
            Self.check(copy, snapshot, "\(start) \(initial) copy \(k)")
        }
    }

    /// Keys appended in place to a chunk that already has its filter, and keys set in place, are
    /// found; keys no longer held are not.
    @Test func keysChangedInPlaceAreFound() {
        for size in [1, 63, 64, 65, 200, 5000] {
            var list = ItemList((0..<size).map { Self.item("k\($0)") })
            list.buildKeyFilters()
            var model = Array(list)
            for key in Self.awkwardKeys {
                list.append(Self.item(key))
                model.append(Self.item(key))
            }
            Self.check(list, model, "size \(size) after appends")
            for (n, key) in Self.awkwardKeys.enumerated() {
                let i = (n * 37) % model.count
                list[i] = Self.item(Self.fresh(key), n)
                model[i] = Self.item(Self.fresh(key), n)
            }
            Self.check(list, model, "size \(size) after sets")
            var copy = list
            copy.buildKeyFilters()
            copy.removeAll { $0.id.utf8.count > 10 }
            Self.check(list, model, "size \(size) original after the copy changed")
            Self.check(copy, model.filter { $0.id.utf8.count <= 10 }, "size \(size) copy")
        }
    }

    // MARK: - Copies in many tasks at once

    /// Many tasks mutate copies of one list (sharing every chunk, some with filters, some without)
    /// at the same time; each must end with exactly its own changes, and the original with none.
    @Test func copiesMutatedConcurrentlyStayIndependent() async {
        let model = (0..<2000).map { Self.item("t-\($0)", $0) }
        let base = {
            var b = ItemList(model)
            b[1000] = model[1000]  // cut into chunks, all filtered
            return b
        }()
        let whole = ItemList(model)  // one chunk, no filter
        let results = await withTaskGroup(of: [String].self) { group in
            for task in 0..<16 {
                group.addTask {
                    var failures: [String] = []
                    var rng = Rng(state: UInt64(task) &+ 99)
                    var list = task % 2 == 0 ? base : whole
                    var mine = model
                    for step in 0..<300 {
                        let n = mine.count
                        switch Int.random(in: 0..<6, using: &rng) {
                        case 0:
                            let t = Self.item("task\(task)-\(step)", step)
                            list.append(t)
                            mine.append(t)
                        case 1 where n > 0:
                            let i = Int.random(in: 0..<n, using: &rng)
                            let t = Self.item("task\(task)-set\(step)", step)
                            list[i] = t
                            mine[i] = t
                        case 2:
                            list.buildKeyFilters()
                        case 3 where n > 0:
                            let i = Int.random(in: 0..<n, using: &rng)
                            list.remove(at: i)
                            mine.remove(at: i)
                        case 4:
                            let i = Int.random(in: 0...n, using: &rng)
                            let t = Self.item("task\(task)-ins\(step)", step)
                            list.insert(t, at: i)
                            mine.insert(t, at: i)
                        default:
                            let key = mine.isEmpty ? "none" : mine[Int.random(in: 0..<n, using: &rng)].id
                            if list.firstIndex(ofKey: key) != mine.firstIndex(where: { $0.id == key }) {
                                failures.append("task \(task) step \(step): key \(key) not where it is")
                            }
                        }
                    }
                    if Array(list) != mine { failures.append("task \(task): content differs from its model") }
                    if Array(base) != model || Array(whole) != model {
                        failures.append("task \(task): the shared original changed")
                    }
                    return failures
                }
            }
            var all: [String] = []
            for await f in group { all += f }
            return all
        }
        #expect(results.isEmpty, "\(results.prefix(5))")
        #expect(Array(base) == model && Array(whole) == model)
    }

    // MARK: - isByteEqual

    @Test func byteEqualityHoldsAcrossRepresentations() {
        let samples: [String] =
            Self.awkwardKeys + [
                "x", String(repeating: "y", count: 100), "\u{E9}t\u{E9}", "e\u{301}te\u{301}",
            ]
        for a in samples {
            for b in samples {
                let bytesEqual = Array(a.utf8) == Array(b.utf8)
                #expect(a.isByteEqual(to: b) == bytesEqual, "\(Array(a.utf8)) vs \(Array(b.utf8))")
                #expect(Self.fresh(a).isByteEqual(to: b) == bytesEqual)
                #expect(a.isByteEqual(to: Self.fresh(b)) == bytesEqual)
                // From a substring (its own storage or the base's), and from a bigger string's piece.
                let sub = String((a + b).utf8.prefix(a.utf8.count))!
                #expect(sub.isByteEqual(to: a))
                #expect(String(Substring(a)).isByteEqual(to: b) == bytesEqual)
                let padded = "pad-pad-pad-pad-pad" + a
                let tail = String(padded[padded.index(padded.startIndex, offsetBy: 19)...])
                #expect(tail.isByteEqual(to: a), "\(Array(a.utf8))")
                // Via Foundation.
                let bridged = NSString(string: a) as String
                #expect(bridged.isByteEqual(to: b) == bytesEqual)
                #expect((ExactString(a) == ExactString(b)) == bytesEqual)
                if bytesEqual {
                    var ha = Hasher()
                    var hb = Hasher()
                    a.hashBytes(into: &ha)
                    Self.fresh(b).hashBytes(into: &hb)
                    #expect(ha.finalize() == hb.finalize())
                }
            }
        }
        // A string that changes after a copy was taken is no longer byte-equal to the copy.
        var grown = String(repeating: "z", count: 40)
        let copy = grown
        grown.append("!")
        #expect(!grown.isByteEqual(to: copy))
        grown.removeLast()
        #expect(grown.isByteEqual(to: copy))
        var small = "abc"
        let smallCopy = small
        small.append("d")
        #expect(!small.isByteEqual(to: smallCopy))
    }
}

extension ItemList {
    /// Changes element `i` through `subscript` (read, change, write), as a caller would.
    mutating func modifyChunkAt(_ i: Int, _ change: (inout Element) -> Void) {
        var e = self[i]
        change(&e)
        self[i] = e
    }
}
