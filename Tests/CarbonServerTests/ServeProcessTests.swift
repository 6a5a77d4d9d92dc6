import CarbonServer
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `carbonstore serve` as an operator starts and stops it: keys at start, bad settings, a busy
/// port, and SIGTERM with a write in flight.
@Suite(.serialized) struct ServeProcessTests {
    static func printedKeys(_ text: String) -> [String] {
        let regex = try! NSRegularExpression(pattern: "csk_[A-Za-z0-9_-]+")
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
            String(text[Range($0.range, in: text)!])
        }
    }

    // MARK: - Keys at start

    @Test func theEmbeddedDefaultWithoutKeysMakesAnAdminKeyForEachRun() async throws {
        let cwd = try TemporaryDirectory("serve-default")
        defer { cwd.remove() }
        var keys: [String] = []
        for run in 0..<2 {
            // No CARBONSTORE_* variable at all: the storage is path:carbonstore-data in the cwd.
            let server = try ServeProcess.serve(environment: [:], directory: cwd.path)
            defer { server.stop() }
            let port = try await offPool { try server.waitForPort() }
            let printed = Self.printedKeys(server.stderr)
            #expect(printed.count == 1, "run \(run): stderr: \(server.stderr)")
            let key = try #require(printed.first)
            #expect(key.count == 4 + 43)
            #expect(!server.stdout.contains(key))
            keys.append(key)

            let users = try await httpRequest(port: port, "GET", "/v1/users", headers: [bearer(key)])
            #expect(users.status == 200, "\(users)")
            let added = try await httpRequest(
                port: port, "POST", "/v1/users/u\(run)/transactions", headers: [bearer(key)],
                body: transactionBatch(id: "t1"))
            #expect(added.status == 200, "\(added)")
            #expect(try await httpRequest(port: port, "GET", "/v1/users").status == 401)
            if run == 1 {
                // The first run's key does not open the second.
                let old = try await httpRequest(port: port, "GET", "/v1/users", headers: [bearer(keys[0])])
                #expect(old.status == 401, "\(old)")
                #expect(users.json?["users"] as? [String] == ["u0"])
            }
            server.signal(SIGTERM)
            let end = try await offPool { server.waitForExit(timeout: .seconds(20)) }
            #expect(end == .exit(0), "stderr: \(server.stderr)")
            // Printed once: not again at the end.
            #expect(Self.printedKeys(server.stderr).count == 1)
            // The data directory made by the first run is said so in the log, with its file system.
            let created = server.stdout.components(separatedBy: "\n").filter {
                $0.contains("created the data directory")
            }
            #expect(created.count == (run == 0 ? 1 : 0), "\(server.stdout)")
            #expect(created.allSatisfy { $0.contains("\"fileSystem\"") && $0.contains("carbonstore-data") })
        }
        #expect(keys.count == 2 && keys[0] != keys[1])
        #expect(FileManager.default.fileExists(atPath: cwd.path + "/carbonstore-data"))
    }

    @Test func otherStorageWithoutKeysRefusesToStart() async throws {
        let dir = try TemporaryDirectory("serve-nokeys")
        defer { dir.remove() }
        let server = try ServeProcess.serve(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        defer { server.stop() }
        let end = try await offPool { server.waitForExit(timeout: .seconds(30)) }
        #expect(end == .exit(64), "stderr: \(server.stderr)")
        #expect(server.stderr.contains("carbonstore keys new"), "\(server.stderr)")
        #expect(server.stderr.contains("CARBONSTORE_API_KEYS"))
        #expect(Self.printedKeys(server.stdout + server.stderr).isEmpty)
        #expect(!server.stdout.contains("listening"))
    }

    @Test func aBadPortVariableIsNamed() async throws {
        let dir = try TemporaryDirectory("serve-badport")
        defer { dir.remove() }
        let server = try ServeProcess.serve(
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_PORT": "abc",
                "CARBONSTORE_API_KEYS": APIKeys.newKey(role: .admin).entry.entry,
            ],
            arguments: [])
        defer { server.stop() }
        let end = try await offPool { server.waitForExit(timeout: .seconds(30)) }
        #expect(end == .exit(64), "stderr: \(server.stderr)")
        #expect(server.stderr.contains("CARBONSTORE_PORT='abc'"), "\(server.stderr)")
        #expect(!server.stdout.contains("listening"))
    }

    /// A keys file that every user of the machine may write would let any of them add an admin key.
    @Test func aKeysFileOthersMayWriteIsRefused() async throws {
        let dir = try TemporaryDirectory("serve-keysfile")
        defer { dir.remove() }
        let file = dir.path + "/keys"
        try (APIKeys.newKey(role: .admin).entry.entry + "\n").write(
            toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o666)
        let server = try ServeProcess.serve(
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path + "/data", "CARBONSTORE_API_KEYS_FILE": file,
            ],
            arguments: [])
        defer { server.stop() }
        let end = try await offPool { server.waitForExit(timeout: .seconds(30)) }
        #expect(end == .exit(64), "stderr: \(server.stderr)")
        #expect(server.stderr.contains("CARBONSTORE_API_KEYS_FILE"), "\(server.stderr)")
        #expect(server.stderr.contains("chmod o-w"), "\(server.stderr)")
        #expect(!server.stdout.contains("listening"))

        // A file of its owner's alone, in a folder where anyone may replace it.
        chmod(file, 0o600)
        chmod(dir.path, 0o777)
        defer { chmod(dir.path, 0o700) }
        let again = try ServeProcess.serve(
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path + "/data", "CARBONSTORE_API_KEYS_FILE": file,
            ],
            arguments: [])
        defer { again.stop() }
        let end2 = try await offPool { again.waitForExit(timeout: .seconds(30)) }
        #expect(end2 == .exit(64), "stderr: \(again.stderr)")
        #expect(again.stderr.contains("its folder"), "\(again.stderr)")
    }

    /// An address that resolves but is not this machine's is the host's fault, named with its source.
    @Test func aHostThatIsNotThisMachinesIsNamed() async throws {
        // Where addresses of other machines may be bound (ip_nonlocal_bind), the bind succeeds.
        let nonlocal = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_nonlocal_bind", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard nonlocal != "1" else { return }
        let dir = try TemporaryDirectory("serve-badhost")
        defer { dir.remove() }
        let server = try ServeProcess.serve(
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_HOST": "192.0.2.1",
                "CARBONSTORE_API_KEYS": APIKeys.newKey(role: .admin).entry.entry,
            ],
            arguments: ["--port", "0"])
        defer { server.stop() }
        let end = try await offPool { server.waitForExit(timeout: .seconds(30)) }
        // Exit 6: an address not up yet at boot is worth another try; the message names the variable.
        #expect(end == .exit(6), "stderr: \(server.stderr)")
        #expect(
            server.stderr.contains(
                "CARBONSTORE_HOST '192.0.2.1' is not an address of this machine, or not up yet"),
            "\(server.stderr)")
    }

    @Test func aPortInUseFailsWithAClearMessage() async throws {
        let dir = try TemporaryDirectory("serve-busy")
        defer { dir.remove() }
        // A listening socket of the test's own holds the port.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))

        let server = try ServeProcess.serve(
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path,
                "CARBONSTORE_API_KEYS": APIKeys.newKey(role: .admin).entry.entry,
            ],
            arguments: ["--port", String(port)])
        defer { server.stop() }
        let end = try await offPool { server.waitForExit(timeout: .seconds(30)) }
        let status = try #require(end, "serve still runs on a port in use; stdout: \(server.stdout)")
        #expect(status != .exit(0), "stderr: \(server.stderr)")
        guard case .exit = status else {
            Issue.record("serve died of a signal: \(status)")
            return
        }
        #expect(server.stderr.contains("127.0.0.1:\(port)"), "\(server.stderr)")
        #expect(server.stderr.contains("another process using the port"), "\(server.stderr)")
        #expect(!server.stdout.contains("\"listening\""))
    }

    // MARK: - SIGTERM

    /// The test holds user u1's lock in its own process (flock works across processes), so that a
    /// write through the server waits for it.
    struct HeldLock {
        let store: Store
        let lease: Lease

        init(uri: String, userID: String) async throws {
            store = try await StoreFactory().makeStore(uri)
            lease = try await store.locks.acquire(
                try store.keys.key(for: userID), userID: userID, wait: .seconds(5))
        }

        func release() async throws { try await store.locks.release(lease) }
    }

    /// SIGTERM, and SIGHUP alike (a closed terminal or a supervisor's hang-up must not cut requests).
    @Test(arguments: [SIGTERM, SIGHUP])
    func aStopSignalLetsTheWriteInFlightFinishAndRefusesNewRequests(signal: Int32) async throws {
        let dir = try TemporaryDirectory("serve-drain")
        defer { dir.remove() }
        let (key, entry) = APIKeys.newKey(role: .write)
        let lock = try await HeldLock(uri: "path:" + dir.path, userID: "u1")
        var released = false
        do {
            let server = try ServeProcess.serve(environment: [
                "CARBONSTORE_STORAGE": "path:\(dir.path)?wait=20000",
                "CARBONSTORE_API_KEYS": entry.entry,
            ])
            defer { server.stop() }
            let port = try await offPool { try server.waitForPort() }

            let post = Task {
                try await httpRequest(
                    port: port, "POST", "/v1/users/u1/transactions", headers: [bearer(key)],
                    body: transactionBatch(id: "t1"), timeout: .seconds(60))
            }
            // Time for the request to reach the server and wait for the lock.
            try await Task.sleep(for: .milliseconds(1500))
            server.signal(signal)

            // New requests, each on a new connection, are refused once the drain has begun.
            var refused: HTTPResponse?
            for _ in 0..<100 {
                let r = try await httpRequest(port: port, "GET", "/healthz", timeout: .seconds(10))
                if r.status == 503 {
                    refused = r
                    break
                }
                #expect(r.status == 200, "\(r)")
                try await Task.sleep(for: .milliseconds(50))
            }
            let r = try #require(refused, "no 503 within 5 s of SIGTERM")
            #expect(r.error?["code"] as? String == "shutting_down", "\(r)")
            #expect(r.header("Retry-After") == "1")
            #expect(r.header("Connection")?.lowercased() == "close")
            let write = try await httpRequest(
                port: port, "POST", "/v1/users/u2/transactions", headers: [bearer(key)],
                body: transactionBatch(id: "t2"), timeout: .seconds(10))
            #expect(write.status == 503, "\(write)")
            #expect(write.error?["code"] as? String == "shutting_down")
            #expect(write.header("Retry-After") == "1")

            // The write in flight keeps the process up until it finishes.
            #expect(server.termination == nil, "the server ended with a write in flight")
            released = true
            try await lock.release()
            let added = try await post.value
            #expect(added.status == 200, "\(added)")
            #expect(((added.json?["results"] as? [[String: Any]])?.first?["status"] as? String) == "added")
            let end = try await offPool { server.waitForExit(timeout: .seconds(10)) }
            #expect(end == .exit(0), "stderr: \(server.stderr)")
        } catch {
            if !released { try? await lock.release() }
            throw error
        }
        let record = try await lock.store.read("u1")
        #expect(record?.transactions.map(\.id) == ["t1"])
        #expect(try await lock.store.read("u2") == nil)
    }

    @Test func sigtermExitsAtTheDeadlineWhenAWriteHangs() async throws {
        let dir = try TemporaryDirectory("serve-deadline")
        defer { dir.remove() }
        let (key, entry) = APIKeys.newKey(role: .write)
        let lock = try await HeldLock(uri: "path:" + dir.path, userID: "u1")
        do {
            let server = try ServeProcess.serve(environment: [
                "CARBONSTORE_STORAGE": "path:\(dir.path)?wait=20000",
                "CARBONSTORE_API_KEYS": entry.entry,
                "CARBONSTORE_SHUTDOWN_DEADLINE_MS": "1000",
            ])
            defer { server.stop() }
            let port = try await offPool { try server.waitForPort() }
            let post = Task {
                try await httpRequest(
                    port: port, "POST", "/v1/users/u1/transactions", headers: [bearer(key)],
                    body: transactionBatch(id: "t1"), timeout: .seconds(60))
            }
            try await Task.sleep(for: .milliseconds(1500))
            let signalled = ContinuousClock.now
            server.signal(SIGTERM)
            let end = try await offPool { server.waitForExit(timeout: .seconds(10)) }
            let took = ContinuousClock.now - signalled
            #expect(end == .exit(1), "stderr: \(server.stderr)")
            #expect(took < .seconds(5), "exited after \(took)")
            #expect(took >= .milliseconds(700), "exited after \(took), before the deadline")
            #expect(server.stdout.contains("shutdown deadline passed"))
            // The write never had the lock: its connection ended without an answer.
            let answer = await post.result
            if case .success(let r) = answer { Issue.record("the cut-off write was answered: \(r)") }
        } catch {
            try? await lock.release()
            throw error
        }
        try await lock.release()
        #expect(try await lock.store.read("u1") == nil)
    }
}
