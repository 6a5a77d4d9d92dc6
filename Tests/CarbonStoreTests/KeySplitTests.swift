import CarbonStoreTestSupport
import Testing

@testable import CarbonStore

/// `PathStorage.split`, which every step of an operation makes of its key: a key's folders and
/// its file name, empty segments left out.
@Suite struct KeySplitTests {
    /// The split as it was written first (the key split into an array of segments).
    static func referenceSplit(_ key: String) -> (folders: [String], name: String) {
        var parts = key.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map {
            String(Substring($0))
        }
        let name = parts.popLast() ?? ""
        return (parts, name)
    }

    @Test func keysSplitIntoFoldersAndAName() {
        #expect(PathStorage.split("10/47/w1.cstore") == (["10", "47"], "w1.cstore"))
        #expect(PathStorage.split("w1.cstore") == ([], "w1.cstore"))
        #expect(PathStorage.split("") == ([], ""))
        #expect(PathStorage.split("/a//b/") == (["a"], "b"))
        #expect(
            PathStorage.split("users/a-very-long-folder-name-past-fifteen-bytes/é\u{301}.cstore")
                == (["users", "a-very-long-folder-name-past-fifteen-bytes"], "é\u{301}.cstore"))
    }

    /// Keys made of segments, slashes (one or more, leading and trailing) and characters of several
    /// UTF-8 lengths split as the reference splits them.
    @Test func theSplitMatchesTheReferenceOnMixedKeys() {
        var rng = SeededRandom(seed: 0x0051_17)
        let pieces = [
            "/", "//", "a", "10", "47", "w1.cstore", "é", "\u{301}", "日本", "🙂", ".", "..",
            "x-long-segment-name",
        ]
        var mismatches: [String] = []
        for _ in 0..<20_000 {
            var key = ""
            for _ in 0..<Int.random(in: 0...8, using: &rng) {
                key += pieces[Int.random(in: 0..<pieces.count, using: &rng)]
            }
            let (folders, name) = PathStorage.split(key)
            let reference = Self.referenceSplit(key)
            if folders != reference.folders || name != reference.name { mismatches.append(key) }
        }
        #expect(mismatches.count == 0, "\(mismatches.prefix(5))")
    }
}
