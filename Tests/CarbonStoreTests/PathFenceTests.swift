import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// The fence of `path:`: a file's version must name one content for ever, so that a writer that
/// read an older file can never replace a newer one, whatever the inode numbers and the sizes.
@Suite struct PathFenceTests {
    static func txn(_ id: String, minor: Int64 = 100) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    /// Two files of one user with the same layout but different content, as two revisions of a
    /// busy user often are.
    static func sameLayoutPair() -> ([UInt8], [UInt8]) {
        let codec = RecordCodec()
        var a = UserRecord(userID: "alice", revision: 7, createdAt: Timestamp(millisecondsSince1970: 0))
        var b = a
        _ = try? a.upsert(txn("t-aaaa", minor: 1111))
        _ = try? b.upsert(txn("t-bbbb", minor: 2222))
        return (codec.encode(a), codec.encode(b))
    }

    @Test func theWholeFileChecksumOfSelfCheckedBlocksDependsOnlyOnTheirLengths() {
        // The residue case that broke the old version (inode + size + CRC-32C of the file): every
        // block of the format ends with its own CRC-32C, so the CRC-32C of the whole file is the
        // same for any two files whose blocks have the same lengths.
        let (a, b) = Self.sameLayoutPair()
        #expect(a != b)
        #expect(a.count == b.count)
        #expect(CRC32C.checksum(a) == CRC32C.checksum(b), "the pair exercises the residue case")
        #expect(PathStorage.version(of: a) != PathStorage.version(of: b))
    }

    @Test func versionsOfDifferentContentNeverRepeat() {
        // Many records of one user that differ in one byte here and there, all of the same size.
        let codec = RecordCodec()
        var seen: [ObjectVersion: [UInt8]] = [:]
        for revision in 1...64 as ClosedRange<UInt64> {
            for digit in 0..<10 {
                var r = UserRecord(
                    userID: "u", revision: revision, createdAt: Timestamp(millisecondsSince1970: 0))
                _ = try? r.upsert(Self.txn("t-\(digit)", minor: Int64(digit)))
                let bytes = codec.encode(r)
                let v = PathStorage.version(of: bytes)
                if let earlier = seen[v] { #expect(earlier == bytes, "one version, two contents") }
                seen[v] = bytes
            }
        }
        #expect(seen.count == 640)
    }

    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    @Test func aStaleWriteIsRefusedAfterTheInodeAndSizeCameBack() async throws {
        // The lost update, step by step: a writer reads revision N; two more writes replace the
        // file, the first temporary file's inode is freed and the next one reuses it, with the
        // same size. The stale writer's version must still not match.
        let dir = try TemporaryDirectory("fence-inode")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let key = "ab/cd/alice.cstore"
        let codec = RecordCodec()
        func record(_ n: Int) -> [UInt8] {
            var r = UserRecord(userID: "alice", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0))
            _ = try? r.upsert(
                Self.txn("t-\(n % 10)\(n / 10 % 10)\(n / 100 % 10)", minor: 1000 + Int64(n % 9000)))
            return codec.encode(r)
        }
        try await storage.put(key, bytes: record(0), condition: .mustNotExist)
        let stale = try #require(try await storage.get(key))
        let staleInode = try #require(Self.inode(dir.path + "/" + key))
        var reused = false
        for n in 1...200 {
            let current = try #require(try await storage.get(key))
            try await storage.put(key, bytes: record(n), condition: .mustMatch(current.version))
            let now = try #require(try await storage.get(key))
            #expect(now.bytes.count == stale.bytes.count)
            if Self.inode(dir.path + "/" + key) == staleInode {
                reused = true
                break
            }
        }
        // ext4 (this machine's /tmp) hands a freed inode out again at once; where it does not,
        // the check below still holds, it just does not exercise the reuse.
        if !reused { print("note: the file system did not reuse the inode") }
        let before = try #require(try await storage.get(key))
        await #expect(throws: VersionMismatchError.self) {
            try await storage.put(key, bytes: stale.bytes, condition: .mustMatch(stale.version))
        }
        await #expect(throws: VersionMismatchError.self) {
            try await storage.delete(key, condition: .mustMatch(stale.version))
        }
        #expect(try await storage.get(key)?.bytes == before.bytes)
    }

    @Test func aVersionSurvivesNoDeleteAndRecreation() async throws {
        // Delete the user and write the same-sized file again: the old version must not match.
        let dir = try TemporaryDirectory("fence-recreate")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let (a, b) = Self.sameLayoutPair()
        let key = "ab/cd/alice.cstore"
        try await storage.put(key, bytes: a, condition: .mustNotExist)
        let stale = try #require(try await storage.get(key))
        #expect(try await storage.delete(key, condition: .mustMatch(stale.version)))
        try await storage.put(key, bytes: b, condition: .mustNotExist)
        await #expect(throws: VersionMismatchError.self) {
            try await storage.put(key, bytes: a, condition: .mustMatch(stale.version))
        }
        #expect(try await storage.get(key)?.bytes == b)
    }

    /// Starts processes that load the machine as in the reproduction: one spinning on a core, one
    /// creating and deleting files on the same file system (so inode numbers are reused).
    static func startLoad(in dir: String) throws -> [Process] {
        let scripts = [
            "end=$(($(date +%s)+600)); while [ $(date +%s) -lt $end ]; do :; done",
            "cd '\(dir)' && end=$(($(date +%s)+600)); while [ $(date +%s) -lt $end ]; do for i in 1 2 3 4 5 6 7 8; do echo x > f$i; done; rm -f f*; done",
        ]
        return try scripts.map { script in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script]
            try p.run()
            return p
        }
    }

    /// The reproduction from the field: 8 tasks in one process each add 25 transactions to each of
    /// 2 users on `path:…?locking=none`, beside a CPU-bound process and one churning files, round
    /// after round. Every acknowledged add must be in the file. `FENCE_ROUNDS` sets the rounds
    /// (default 8; `FENCE_ROUNDS=150` repeats the field report, which lost updates within 60 to 150 rounds before the fix).
    @Test(arguments: ["none", "local"])
    func manyTasksUnderLoadLoseNothing(locking: String) async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["FENCE_ROUNDS"] ?? "") ?? 8
        let churn = try TemporaryDirectory("fence-churn")
        defer { churn.remove() }
        let load = try Self.startLoad(in: churn.path)
        defer {
            for p in load {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        var lost = 0
        for round in 0..<rounds {
            let dir = try TemporaryDirectory("fence-round")
            defer { dir.remove() }
            let store = try await StoreFactory().makeStore("path:\(dir.path)?locking=\(locking)")
            let acknowledged = try await withThrowingTaskGroup(of: [String: Set<String>].self) { group in
                for t in 0..<8 {
                    group.addTask {
                        var mine: [String: Set<String>] = [:]
                        for a in 0..<25 {
                            for user in ["u1", "u2"] {
                                let id = "r\(round)-t\(t)-\(a)"
                                try await store.update(user) { try $0.upsert(Self.txn(id, minor: Int64(a))) }
                                mine[user, default: []].insert(id)
                            }
                        }
                        return mine
                    }
                }
                var all: [String: Set<String>] = [:]
                for try await part in group { all.merge(part) { $0.union($1) } }
                return all
            }
            for user in ["u1", "u2"] {
                let record = try await store.get(user)
                let stored = Set(record.transactions.map(\.id))
                let missing = acknowledged[user, default: []].subtracting(stored)
                lost += missing.count
                #expect(
                    missing.isEmpty,
                    "round \(round), \(user): acknowledged but lost: \(missing.sorted().prefix(5))")
                #expect(record.revision == 200 && stored.count == 200)
            }
        }
        #expect(lost == 0, "\(lost) acknowledged adds lost in \(rounds) rounds")
    }
}
