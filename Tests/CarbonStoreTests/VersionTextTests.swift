import CarbonFormat
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
}
