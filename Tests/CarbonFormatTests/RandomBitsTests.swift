import Testing

@testable import CarbonFormat

/// `RandomBits.pair`, the source of every `WriteID` and lock operation id: 128 bits from one
/// request to the system's generator.
@Suite struct RandomBitsTests {
    @Test func everyBitOfBothWordsVariesAndNoPairRepeats() {
        var seen = Set<[UInt64]>()
        var (orHigh, orLow) = (UInt64(0), UInt64(0))
        var (andHigh, andLow) = (UInt64.max, UInt64.max)
        for _ in 0..<10_000 {
            let (high, low) = RandomBits.pair()
            seen.insert([high, low])
            (orHigh, orLow) = (orHigh | high, orLow | low)
            (andHigh, andLow) = (andHigh & high, andLow & low)
        }
        #expect(seen.count == 10_000)
        // The two words are drawn apart: never the same word twice in a pair.
        #expect(!seen.contains { $0[0] == $0[1] })
        // A word filled short (8 of 16 bytes, or none) would keep bits at zero, or at what it held.
        #expect(orHigh == .max && orLow == .max)
        #expect(andHigh == 0 && andLow == 0)
    }

    @Test func writeIDsAreFresh() {
        let ids = (0..<1_000).map { _ in WriteID.random() }
        #expect(Set(ids).count == ids.count)
    }

    #if os(Linux)
        /// The C library's `getrandom` is found, so an id costs one request to the kernel.
        @Test func theCLibrarysGetrandomIsUsed() throws {
            let getrandom = try #require(RandomBits.getrandom)
            // Called as `pair` calls it: 16 bytes, all written.
            var words: (UInt64, UInt64) = (0, 0)
            let filled = withUnsafeMutableBytes(of: &words) { getrandom($0.baseAddress, $0.count, 0) }
            #expect(filled == 16)
            #expect(words.0 != 0 && words.1 != 0 && words.0 != words.1)
        }
    #endif
}
