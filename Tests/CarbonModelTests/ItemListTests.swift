import CarbonModel
import Foundation
import Testing

/// `ItemList` against `Array` as the model: every operation, on lists made from one long array and
/// on lists built by appends, with copies taken along the way that must never change.
@Suite struct ItemListTests {
    static let eur = CurrencyCode("EUR")!

    static func item(_ n: Int, _ variant: Int = 0) -> Transaction {
        Transaction(
            id: "t-\(n)", time: Timestamp(millisecondsSince1970: Int64(n)),
            amount: Money(minorUnits: Int64(variant), currency: eur))
    }

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

    static func check(_ list: ItemList<Transaction>, _ model: [Transaction], _ note: String) {
        #expect(list.count == model.count, "\(note)")
        #expect(Array(list) == model, "\(note): iteration")
        #expect(list.array == model, "\(note): array")
        for i in Swift.stride(from: 0, to: model.count, by: Swift.max(1, model.count / 50)) {
            #expect(list[i] == model[i], "\(note): subscript \(i)")
        }
        if !model.isEmpty {
            let r = (model.count / 3)..<(model.count / 3 * 2)
            #expect(list.elements(in: r) == Array(model[r]), "\(note): elements(in:)")
        }
    }

    @Test(arguments: [0, 1, 5, 300])
    func everyOperationMatchesAnArrayAndCopiesNeverChange(initial: Int) {
        var rng = Rng(state: UInt64(initial) &* 7919 &+ 1)
        var model = (0..<initial).map { Self.item($0) }
        var list = ItemList(model)
        var copies: [(ItemList<Transaction>, [Transaction])] = []
        var next = initial
        for step in 0..<2000 {
            if step % 97 == 0 { copies.append((list, model)) }
            let op = Int.random(in: 0..<9, using: &rng)
            let n = model.count
            switch op {
            case 0, 1:
                let t = Self.item(next)
                next += 1
                list.append(t)
                model.append(t)
            case 2:
                let i = Int.random(in: 0...n, using: &rng)
                let t = Self.item(next)
                next += 1
                list.insert(t, at: i)
                model.insert(t, at: i)
            case 3 where n > 0:
                let i = Int.random(in: 0..<n, using: &rng)
                #expect(list.remove(at: i) == model.remove(at: i))
            case 4 where n > 0:
                let i = Int.random(in: 0..<n, using: &rng)
                let t = Self.item(Int.random(in: 0..<(next + 5), using: &rng), step)
                list[i] = t
                model[i] = t
            case 5:
                let a = Int.random(in: 0...n, using: &rng)
                let b = Int.random(in: a...Swift.min(n, a + 150), using: &rng)
                let rows = (0..<Int.random(in: 0...140, using: &rng)).map { _ in
                    defer { next += 1 }
                    return Self.item(next)
                }
                list.replaceSubrange(a..<b, with: rows)
                model.replaceSubrange(a..<b, with: rows)
            case 6 where step % 50 == 0:
                let m = Int.random(in: 2...7, using: &rng)
                list.removeAll {
                    Int($0.amount.minorUnits) % m == 1 || $0.time.millisecondsSince1970 % Int64(m) == 0
                }
                model.removeAll {
                    Int($0.amount.minorUnits) % m == 1 || $0.time.millisecondsSince1970 % Int64(m) == 0
                }
            case 7 where n > 1:
                list.swapAt(0, n - 1)
                model.swapAt(0, n - 1)
            default:
                let t = Self.item(next)
                next += 1
                list.append(contentsOf: [t, t])
                model.append(contentsOf: [t, t])
            }
            if step % 41 == 0 { Self.check(list, model, "initial \(initial), step \(step)") }
        }
        Self.check(list, model, "initial \(initial), end")
        for (k, (copy, snapshot)) in copies.enumerated() {
            Self.check(copy, snapshot, "initial \(initial), copy \(k)")
        }
    }

    @Test func findsKeysByTheirBytesOnly() {
        var list = ItemList((0..<1000).map { Self.item($0) })
        list.append(Self.item(5000))
        for n in [0, 1, 63, 64, 500, 999, 5000] {
            #expect(list.firstIndex(ofKey: "t-\(n)") == list.firstIndex { $0.id == "t-\(n)" })
        }
        for missing in ["t-1000", "t-", "", "t-00", "T-1"] {
            #expect(list.firstIndex(ofKey: missing) == nil, "\(missing)")
        }
        // Canonically equivalent spellings are other keys.
        let nfc = Transaction(
            id: "caf\u{E9}", time: .init(millisecondsSince1970: 1),
            amount: Money(minorUnits: 1, currency: Self.eur))
        list.insert(nfc, at: 10)
        #expect(list.firstIndex(ofKey: "caf\u{E9}") == 10)
        #expect(list.firstIndex(ofKey: "cafe\u{301}") == nil)
        // A key replaced in place is found by its new value, no longer by its old one.
        list[10] = Self.item(7777)
        #expect(list.firstIndex(ofKey: "t-7777") == 10)
        #expect(list.firstIndex(ofKey: "caf\u{E9}") == nil)
    }

    @Test func sharedEndsAreEqualElementsAndCoverWhatAChangeDidNotTouch() {
        let base = ItemList((0..<20_000).map { Self.item($0) })
        var appended = base
        appended.append(Self.item(20_000))
        var ends = base.sharedEnds(with: appended)
        #expect(ends.prefix == 20_000 && ends.suffix == 0)

        var changed = base
        changed[10_000] = Self.item(10_000, 1)  // cuts the one long chunk into chunks
        var again = changed
        again[15_000] = Self.item(15_000, 2)
        ends = changed.sharedEnds(with: again)
        #expect(ends.prefix + ends.suffix >= 20_000 - 2 * 64 * 2)
        #expect(Array(changed[..<ends.prefix]) == Array(again[..<ends.prefix]))
        #expect(Array(changed.suffix(ends.suffix)) == Array(again.suffix(ends.suffix)))
        #expect(changed != again)
        #expect(changed == changed)
        var same = changed
        same[15_000] = changed[15_000]
        #expect(same == changed)
        #expect(same.hashValue == changed.hashValue)
    }

    @Test func aKeyedChangeToAListMadeWholeStillSharesItsElements() throws {
        // A list made from one array (as decoded) gets its keys' filter on the first keyed change;
        // the copy with the filter still counts as holding the same elements, so the diff of that
        // first change costs what it changes.
        let before = UserRecord(
            userID: "u", createdAt: .init(millisecondsSince1970: 0),
            transactions: ItemList((0..<1000).map { Self.item($0) }))
        var after = before
        #expect(try after.upsert(Self.item(5000)) == .inserted)
        #expect(before.transactions.sharedEnds(with: after.transactions).prefix == 1000)
        #expect(try after.upsert(Self.item(7)) == .unchanged)
        #expect(after.transactions.count == 1001)
    }

    @Test func encodesAsAJSONArray() throws {
        let list: ItemList<Transaction> = [Self.item(1), Self.item(2)]
        let json = try JSONEncoder().encode(list)
        #expect(try JSONDecoder().decode([Transaction].self, from: json) == [Self.item(1), Self.item(2)])
        #expect(try JSONDecoder().decode(ItemList<Transaction>.self, from: json) == list)
        #expect(ItemList<Transaction>().isEmpty && list.count == 2)
    }
}
