import Testing

@testable import CarbonStore

@Suite struct UserKeysTests {
    static let awkwardIDs = [
        "alice", "Alice", "alice@example.com", "../../etc/passwd", "a/b", "/", ".", "..", ".hidden", "_5f",
        "_", "a b", "tab\there", "nul\u{0}byte", "emoji 👩‍🚀", "Ωμέγα", "שלום", "e\u{301}", "-",
        String(repeating: "x", count: 256), String(repeating: "é", count: 128),
        String(repeating: "/", count: 256),
        "auth0|5f7c8ec7c33c6c004bbafe82",
    ]

    @Test(arguments: awkwardIDs)
    func roundTripAndConfinement(id: String) throws {
        for prefix in ["", "tenants/eu/"] {
            let keys = UserKeys(prefix: prefix)
            let key = try keys.key(for: id)
            #expect(keys.userID(forKey: key) == id)
            #expect(key.hasPrefix(prefix))
            let body = key.dropFirst(prefix.count)
            let segments = body.split(separator: "/", omittingEmptySubsequences: false)
            #expect(segments.count >= 3)
            for segment in segments {
                #expect(!segment.isEmpty)
                #expect(!segment.hasPrefix("."))
                #expect(segment.utf8.count <= 255)
            }
            #expect(key.utf8.count <= 1024)
        }
    }

    @Test func distinctIDsGetDistinctKeys() throws {
        let keys = UserKeys()
        var seen: [String: String] = [:]
        var ids = Self.awkwardIDs
        for i in 0..<2000 { ids.append("user-\(i)") }
        for id in ids {
            let key = try keys.key(for: id)
            #expect(seen[key] == nil, "\(id) and \(seen[key] ?? "") share \(key)")
            seen[key] = id
        }
    }

    @Test func rejectsEmptyAndOversized() {
        #expect(throws: InvalidUserIDError.self) { try UserKeys().key(for: "") }
        let big = String(repeating: "a", count: 10_240)
        #expect {
            try UserKeys().key(for: big)
        } throws: { error in
            (error as? InvalidUserIDError)?.description.contains("at most 256 bytes") == true
        }
    }

    @Test func foreignNamesAreNotUsers() {
        let keys = UserKeys()
        #expect(keys.userID(forKey: "ab/cd/alice.cstore") == nil)  // wrong hash folder
        #expect(keys.userID(forKey: "notes.txt") == nil)
        let good = try! keys.key(for: "bob")
        // A non-canonical escape of a kept byte is not ours either.
        #expect(keys.userID(forKey: good.replacingOccurrences(of: "bob", with: "b_6fb")) == nil)
    }

    /// A key of a store whose prefix is a sub-folder of this one's is that store's user, found by
    /// its prefix; this store's own keys and foreign names are not.
    @Test func keysOfLongerPrefixesAreTheirStoresUsers() throws {
        let long = String(repeating: "é", count: 120)
        for (outer, inner) in [("", "tenants/eu"), ("", "a"), ("tenants", "tenants/eu/x"), ("", "t/87/22")] {
            for id in ["alice", "a/b", long] {
                let key = try UserKeys(prefix: inner).key(for: id)
                let found = UserKeys(prefix: outer).nestedUserID(forKey: key)
                #expect(found?.prefix == inner + "/" && found?.userID == id, "\(key)")
            }
        }
        let keys = UserKeys()
        #expect(keys.nestedUserID(forKey: try keys.key(for: "alice")) == nil)
        #expect(keys.nestedUserID(forKey: "tenants/eu/ab/cd/alice.cstore") == nil)  // wrong hash folder
        #expect(keys.nestedUserID(forKey: "tenants/eu/notes.txt") == nil)
        #expect(
            UserKeys(prefix: "other").nestedUserID(forKey: try UserKeys(prefix: "t/eu").key(for: "a")) == nil)
    }

    @Test func hashFoldersAreStable() throws {
        // The folder layout is part of the on-disk format: it must never change between versions.
        // Values computed independently with a reference FNV-1a 32 implementation.
        #expect(try UserKeys().key(for: "alice") == "87/22/alice.cstore")
        #expect(try UserKeys().key(for: "a/b") == "3a/8e/a_2fb.cstore")
    }
}
