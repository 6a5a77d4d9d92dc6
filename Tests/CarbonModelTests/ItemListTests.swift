import Foundation
import Testing

@testable import CarbonModel

/// `ItemList`'s keys, shared chunks and coding (every operation against `Array` as the model is in
/// `ItemListAdversaryTests`).
@Suite struct ItemListTests {
    static let eur = CurrencyCode("EUR")!

    static func item(_ n: Int, _ variant: Int = 0) -> Transaction {
        Transaction(
            id: "t-\(n)", time: Timestamp(millisecondsSince1970: Int64(n)),
            amount: Money(minorUnits: Int64(variant), currency: eur))
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

    @Test func aChangeInsideADecodedListCutsItIntoPartsThatFindTheirOwnKeys() {
        // As decoded: one chunk over one array, its filter built by a keyed change.
        var list = ItemList((0..<20_000).map { Self.item($0) })
        list.buildKeyFilters()
        let before = list
        list[10_000] = Self.item(10_000, 1)
        list.buildKeyFilters()
        // Parts of at most 128, all but the changed one still the storage of the list before.
        #expect(list.chunks.allSatisfy { $0.items.count <= 128 })
        let shared = before.sharedEnds(with: list)
        #expect(shared.prefix + shared.suffix >= 20_000 - 64)
        // Each part's filter is its own: a key is a candidate in few parts, not in every part.
        for n in [0, 9_999, 10_000, 19_999] {
            let hash = ByteHash.hash("t-\(n)")
            let candidates = list.chunks.filter { $0.filter?.mayContain(hash) ?? true }.count
            #expect(candidates <= 20, "t-\(n): \(candidates) of \(list.chunks.count) parts")
            #expect(list.firstIndex(ofKey: "t-\(n)") == n)
        }
    }

    @Test func insertsInTheMiddleLeaveChunksAtLeastHalfFull() {
        // Transactions arriving out of time order land in the middle of the list, one at a time;
        // each insert into a full chunk used to leave a chunk of one element behind it.
        var list = ItemList((0..<2000).map { Self.item($0 * 10) })
        list.buildKeyFilters()
        var model = list.array
        var random = SystemRandomNumberGenerator()
        for k in 0..<3000 {
            let at = Int.random(in: 0...list.count, using: &random)
            let t = Self.item(1_000_000 + k)
            list.insert(t, at: at)
            model.insert(t, at: at)
        }
        #expect(list.array == model)
        // 5,000 elements in chunks of at most 128: at most 5000 / 32 + 1 chunks of the inserts.
        #expect(list.chunks.allSatisfy { !$0.items.isEmpty && $0.items.count <= 128 })
        #expect(list.chunks.count <= 5000 / 32 + 1, "\(list.chunks.count) chunks")
        let small = list.chunks.filter { $0.items.count < 32 }.count
        #expect(small <= 1, "\(small) chunks of fewer than 32 elements")
    }

    @Test func aListSharesWholeChunksWithItsCopyAfterManyChanges() {
        // The shared ends of a list and a copy changed in one place cover every other element,
        // however fragmented the list (here: many inserts in the middle, then one more change).
        var list = ItemList((0..<1000).map { Self.item($0 * 10) })
        for k in 0..<500 { list.insert(Self.item(20_000 + k), at: (k * 7919) % list.count) }
        var copy = list
        copy.insert(Self.item(99_999), at: 700)
        let ends = list.sharedEnds(with: copy)
        #expect(ends.prefix + ends.suffix >= list.count - 64)
        #expect(ends.prefix <= 700 && ends.suffix <= list.count - 700)
        #expect(Array(list[..<ends.prefix]) == Array(copy[..<ends.prefix]))
        #expect(Array(list.suffix(ends.suffix)) == Array(copy.suffix(ends.suffix)))
    }

    @Test func encodesAsAJSONArray() throws {
        let list: ItemList<Transaction> = [Self.item(1), Self.item(2)]
        let json = try JSONEncoder().encode(list)
        #expect(try JSONDecoder().decode([Transaction].self, from: json) == [Self.item(1), Self.item(2)])
        #expect(try JSONDecoder().decode(ItemList<Transaction>.self, from: json) == list)
        #expect(ItemList<Transaction>().isEmpty && list.count == 2)
    }
}
