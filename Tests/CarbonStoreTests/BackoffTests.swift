import CarbonStore
import CarbonStoreTestSupport
import Testing

@Suite struct BackoffTests {
    @Test func ceilingDoublesUpToCap() {
        var b = Backoff(base: .milliseconds(10), cap: .milliseconds(100))
        var rng = SeededRandom(seed: 1)
        var ceilings: [Duration] = []
        for _ in 0..<6 {
            ceilings.append(b.ceiling)
            _ = b.next(using: &rng)
        }
        #expect(ceilings == [10, 20, 40, 80, 100, 100].map { .milliseconds($0) })
    }

    @Test func fullJitterStaysWithinCeiling() {
        var rng = SeededRandom(seed: 42)
        var b = Backoff(base: .milliseconds(5), cap: .seconds(1))
        var sawSmall = false
        for _ in 0..<200 {
            let ceiling = b.ceiling
            let d = b.next(using: &rng)
            #expect(d >= .zero && d <= ceiling)
            if d < ceiling / 2 { sawSmall = true }
        }
        #expect(sawSmall)
    }

    @Test func operationIDsAreUnique() {
        var seen = Set<String>()
        for _ in 0..<1000 { seen.insert(OperationID.make()) }
        #expect(seen.count == 1000)
        #expect(OperationID.make().count == 36)
    }

    /// UUID text form: 32 lower-case hex digits grouped 8-4-4-4-12, every digit used.
    @Test func operationIDsAreLowerCaseHexGroupedAsUUIDs() {
        var digitsSeen = Set<Character>()
        for _ in 0..<200 {
            let id = OperationID.make()
            let groups = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(groups.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            let digits = groups.joined()
            #expect(digits.allSatisfy { "0123456789abcdef".contains($0) }, "\(id)")
            digitsSeen.formUnion(digits)
        }
        #expect(digitsSeen.count == 16)
    }
}
