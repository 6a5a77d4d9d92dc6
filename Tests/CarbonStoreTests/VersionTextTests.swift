import CarbonFormat
import CarbonStoreTestSupport
import Testing

@testable import CarbonStore

/// The text of a `path:` version (`v2:<snapshot id>:<valid length>:<last frame id>[:<change
/// time>]`), which every update parses: what it prints parses back to the same version, and
/// anything else is refused.
@Suite struct VersionTextTests {
    typealias AppendVersion = PathStorage.AppendVersion

    @Test func versionsParseBackToThemselves() {
        var rng = SystemRandomNumberGenerator()
        for k in 0..<300 {
            let changed: PathStorage.ChangeTime? =
                k % 3 == 0
                ? nil
                : .init(
                    seconds: Int.random(in: -5...2_000_000_000, using: &rng),
                    nanoseconds: Int.random(in: 0..<1_000_000_000, using: &rng))
            let v = AppendVersion(
                fileID: WriteID(high: rng.next(), low: rng.next()),
                validLength: Int.random(in: 1...Int.max, using: &rng),
                lastID: WriteID(high: rng.next(), low: rng.next()), changed: changed)
            let parsed = AppendVersion(v.version)
            #expect(parsed == v, "\(v.version.rawValue)")
            #expect(parsed?.version == v.version)
        }
    }

    @Test func anythingElseIsRefused() {
        let id = "000102030405060708090a0b0c0d0e0f"
        let good = "v2:\(id):100:\(id)"
        #expect(AppendVersion(ObjectVersion(good)) != nil)
        #expect(AppendVersion(ObjectVersion(good + ":17.5"))?.changed == .init(seconds: 17, nanoseconds: 5))
        for bad in [
            "", "v2", "v2:::", "v3:\(id):100:\(id)", "V2:\(id):100:\(id)", "v2:\(id):0:\(id)",
            "v2:\(id):-4:\(id)", "v2:\(id)::\(id)", "v2:\(id):1x:\(id)", "v2:\(id):100:\(id.uppercased())",
            "v2:\(id.dropLast()):100:\(id)", "v2:\(id):100:\(id):", "v2:\(id):100:\(id):17",
            "v2:\(id):100:\(id):17.5.1", "v2:\(id):100:\(id):x.5", "v2:\(id):100:\(id):17.5:1",
            "v2:\(id):99999999999999999999999:\(id)", "sha256:\(id)\(id)", " v2:\(id):100:\(id)",
            "v2:\(id):100:\(id.dropLast())\u{301}", "v2:\(id):1\u{301}:\(id)",
            // A colon joined to a combining mark (one Character, two parts as bytes).
            "v2:\(id):100:\u{301}\(id)", "v2:\(id)\u{600}:100:\(id)", "v2:\u{301}\(id):100:\(id)",
        ] {
            #expect(AppendVersion(ObjectVersion(bad)) == nil, "\(bad)")
        }
    }

    /// The parse as it was written first (the fields split into an array), which the parse that
    /// reads them in place must match on every text.
    static func referenceParse(_ version: ObjectVersion) -> AppendVersion? {
        let parts = version.rawValue.utf8.split(
            separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard parts.count == 4 || parts.count == 5, parts[0].elementsEqual("v2".utf8),
            let f = WriteID(hexDigits: parts[1]),
            let n = Int(Substring(parts[2])), n > 0, let l = WriteID(hexDigits: parts[3])
        else { return nil }
        var changed: PathStorage.ChangeTime? = nil
        if parts.count == 5 {
            guard let c = PathStorage.ChangeTime(Substring(parts[4])) else { return nil }
            changed = c
        }
        return AppendVersion(fileID: f, validLength: n, lastID: l, changed: changed)
    }

    /// Texts made of a version's pieces (valid and broken fields, extra and missing colons, bytes
    /// of other characters) parse as the reference parses them.
    @Test func theParseMatchesTheReferenceOnMixedTexts() {
        var rng = SeededRandom(seed: 0x5eed_7e47)
        let id = "000102030405060708090a0b0c0d0e0f"
        let pieces = [
            "v2", "v3", "", ":", "::", id, String(id.dropLast()), id.uppercased(), "100", "0", "-1", "1x",
            "17.5", "17", "x.5", "\u{301}", "\u{600}", "é", " ", "99999999999999999999999", "1.2.3",
        ]
        var mismatches: [String] = []
        for _ in 0..<20_000 {
            var text = ""
            let count = Int.random(in: 1...9, using: &rng)
            for k in 0..<count {
                if k > 0 && Int.random(in: 0..<4, using: &rng) != 0 { text += ":" }
                text += pieces[Int.random(in: 0..<pieces.count, using: &rng)]
            }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                text = "v2:\(id):100:\(id)" + (text.first == ":" ? text : ":" + text)
            }
            let version = ObjectVersion(text)
            if AppendVersion(version) != Self.referenceParse(version) { mismatches.append(text) }
        }
        #expect(mismatches.count == 0, "\(mismatches.prefix(5))")
    }
}
