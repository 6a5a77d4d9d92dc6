import Testing

@testable import CarbonModel

/// A change that stays inside one chunk changes that chunk alone and adds the new keys to its
/// filter, instead of cutting the chunk again and building its filter from every key: applying
/// other writers' change frames to a cached record is mostly such changes.
@Suite struct ItemListOneChunkTests {
    static func item(_ n: Int, _ variant: Int = 0) -> Transaction { ItemListTests.item(n, variant) }

    /// A list of 10 chunks of 32 elements with their filters, as inserts in the middle leave it.
    static func chunked() -> ItemList<Transaction> {
        var list = ItemList((0..<320).map { item($0 * 10) })
        list.buildKeyFilters()
        // The first change cuts the one long chunk in chunks of 64; inserting then removing
        // one element in each leaves chunks of 32 and 33 (`cut`), with filters.
        for c in 0..<5 { list.insert(item(100_000 + c), at: c * 64 + 1) }
        for c in 0..<5 { list.removeAll { $0.id == "t-\(100_000 + c)" } }
        return list
    }

    @Test func anInsertInsideAChunkKeepsTheOtherChunksAndAddsToItsFilter() {
        var list = Self.chunked()
        let original = list
        let before = list.chunks.map { $0.items.count }
        let c = list.locate(100).chunk
        let added = list.chunks[c].filter?.added
        #expect(added != nil, "the chunks have filters")

        // One element out, another in: the filter keeps the key that left (it may), and gains one.
        list.remove(at: 101)
        list.insert(Self.item(1_001), at: 100)

        #expect(list.chunks.count == before.count, "no chunk was cut")
        #expect(list.chunks[c].items.count == before[c])
        #expect(
            list.chunks[c].filter?.added == added.map { $0 + 1 }, "the filter gained one key, not rebuilt")
        for k in list.chunks.indices where k != c {
            #expect(list.chunks[k] === original.chunks[k], "chunk \(k) is shared with the copy")
        }
        #expect(list.firstIndex(ofKey: "t-1001") == 100)
        #expect(
            list.ends
                == Array(
                    list.chunks.map(\.items.count).reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }))
        // The copy is unchanged.
        #expect(original.firstIndex(ofKey: "t-1001") == nil)
        var model = Array(original)
        model.remove(at: 101)
        model.insert(Self.item(1_001), at: 100)
        #expect(Array(list) == model)
        // The change is one place for the frame's diff: the other elements are shared.
        let ends = original.sharedEnds(with: list)
        #expect(ends.prefix + ends.suffix >= original.count - ItemList<Transaction>.chunkSize)
    }

    @Test func replacingAndRemovingInsideAChunkFindsTheRightKeys() {
        var list = Self.chunked()
        var model = Array(list)
        // Replace one element by two, remove one, replace one in place.
        list.replaceSubrange(40..<41, with: [Self.item(7_001), Self.item(7_002)])
        model.replaceSubrange(40..<41, with: [Self.item(7_001), Self.item(7_002)])
        list.replaceSubrange(50..<51, with: [])
        model.replaceSubrange(50..<51, with: [])
        list[60] = Self.item(600, 9)
        model[60] = Self.item(600, 9)
        #expect(Array(list) == model)
        for element in model { #expect(list.firstIndex(ofKey: element.id) == model.firstIndex(of: element)) }
        #expect(list.firstIndex(ofKey: "t-400") == nil, "a removed key is not found")
    }

    @Test func aChunkChurnedManyTimesGetsItsFilterBuiltAgain() {
        // Keys removed and others added in one chunk, over and over: the filter never holds more
        // keys than it is sized for, and every key is found, none that left.
        var list = Self.chunked()
        var model = Array(list)
        let c = list.locate(3).chunk
        for k in 0..<500 {
            let t = Self.item(200_000 + k)
            list.replaceSubrange(3..<4, with: [t])
            model.replaceSubrange(3..<4, with: [t])
            let f = list.chunks[c].filter
            #expect(f != nil && f!.added <= f!.capacity)
        }
        #expect(Array(list) == model)
        #expect(list.firstIndex(ofKey: "t-\(200_499)") == 3)
        for k in 0..<499 { #expect(list.firstIndex(ofKey: "t-\(200_000 + k)") == nil) }
        for (i, element) in model.enumerated() { #expect(list.firstIndex(ofKey: element.id) == i) }
    }

    @Test func aChangeThatWouldPassTheChunkSizeCutsTheChunk() {
        var list = Self.chunked()
        let chunks = list.chunks.count
        let c = list.locate(0).chunk
        let room = ItemList<Transaction>.chunkSize - list.chunks[c].items.count
        // Filling the chunk to the chunk size stays in it; one more element cuts it in two.
        list.replaceSubrange(0..<0, with: (0..<room).map { Self.item(300_000 + $0) })
        #expect(list.chunks.count == chunks)
        list.insert(Self.item(400_000), at: 0)
        #expect(list.chunks.count == chunks + 1)
        #expect(list.chunks.allSatisfy { $0.items.count <= ItemList<Transaction>.chunkSize })
        #expect(list.firstIndex(ofKey: "t-400000") == 0)
    }
}
