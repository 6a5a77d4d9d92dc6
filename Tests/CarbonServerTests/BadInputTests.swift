import CarbonFormat
import CarbonModel
import CarbonServer
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Every kind of bad request gets a JSON error naming the field or the limit, and writes nothing.
@Suite struct BadInputTests {
    /// A body that must be refused with `status`, `code` and, if given, `field`.
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var uri = "/v1/users/u1/transactions"
        var method: HTTPRequest.Method = .post
        var body: String
        var status = 400
        var code = "invalid_request"
        var field: String?
        var contentType = "application/json"
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "malformed JSON", body: #"{"transactions":[{"id":"t1",}]}"#),
        Case(name: "trailing text", body: #"{"transactions":[]} x"#),
        Case(name: "a duplicate member", body: #"{"transactions":[],"transactions":[]}"#),
        Case(name: "an empty body", body: ""),
        Case(name: "not an object", body: #"[1,2]"#),
        Case(name: "an empty batch", body: #"{"transactions":[]}"#, field: "transactions"),
        Case(name: "a batch that is not an array", body: #"{"transactions":{}}"#, field: "transactions"),
        Case(name: "an unknown top-level field", body: #"{"transactions":[],"extra":1}"#, field: "extra"),
        Case(
            name: "an unknown item field", body: batch(transactionJSON("t1", extra: #","colour":"red""#)),
            field: "transactions[0].colour"),
        Case(
            name: "a wrong type",
            body:
                #"{"transactions":[{"id":7,"time":"2026-01-01T00:00:00Z","amount":{"amount":"1","currency":"EUR"}}]}"#,
            field: "transactions[0].id"),
        Case(
            name: "an unknown currency", body: batch(transactionJSON("t1", currency: "EUX")),
            field: "transactions[0].amount.currency"),
        Case(
            name: "too many decimals for the currency", body: batch(transactionJSON("t1", amount: "1.234")),
            field: "transactions[0].amount.amount"),
        Case(
            name: "an amount that is not a number", body: batch(transactionJSON("t1", amount: "12,50")),
            field: "transactions[0].amount.amount"),
        Case(
            name: "an amount given as a number",
            body:
                #"{"transactions":[{"id":"t1","time":"2026-01-01T00:00:00Z","amount":{"amount":12.5,"currency":"EUR"}}]}"#,
            field: "transactions[0].amount.amount"),
        Case(
            name: "a bad date", body: batch(transactionJSON("t0"), transactionJSON("t1", time: "2026-02-30")),
            field: "transactions[1].time"),
        // RFC 3339 date-times only: a date alone has no zone to read it in.
        Case(
            name: "a date alone", body: batch(transactionJSON("t1", time: "2026-03-01")),
            field: "transactions[0].time"),
        Case(
            name: "a time without seconds", body: batch(transactionJSON("t1", time: "2026-03-01T09:30Z")),
            field: "transactions[0].time"),
        Case(
            name: "an offset without its colon",
            body: batch(transactionJSON("t1", time: "2026-03-01T09:30:00+0100")),
            field: "transactions[0].time"),
        Case(
            name: "a comma before the fraction",
            body: batch(transactionJSON("t1", time: "2026-03-01T09:30:00,5Z")),
            field: "transactions[0].time"),
        Case(
            name: "a time without a zone", body: batch(transactionJSON("t1", time: "2026-03-01T09:30:00")),
            field: "transactions[0].time"),
        Case(
            name: "a time in milliseconds", body: batch(transactionJSON("t1", time: "@1000")),
            field: "transactions[0].time"),
        Case(
            name: "a missing field", body: #"{"transactions":[{"id":"t1","time":"2026-01-01T00:00:00Z"}]}"#,
            field: "transactions[0].amount"),
        Case(name: "an empty id", body: batch(transactionJSON("")), field: "transactions[0].id"),
        Case(
            name: "an id over 256 bytes", body: batch(transactionJSON(String(repeating: "é", count: 129))),
            field: "transactions[0].id"),
        Case(
            name: "an mcc out of range", body: batch(transactionJSON("t1", extra: #","mcc":10000"#)),
            field: "transactions[0].mcc"),
        Case(
            name: "an mcc with a fraction", body: batch(transactionJSON("t1", extra: #","mcc":5411.5"#)),
            field: "transactions[0].mcc"),
        Case(
            name: "an mcc with a fraction a Double would round away",
            body: batch(transactionJSON("t1", extra: #","mcc":5411.00000000000001"#)),
            field: "transactions[0].mcc"),
        Case(
            name: "an mcc of a tiny fraction", body: batch(transactionJSON("t1", extra: #","mcc":1e-400"#)),
            field: "transactions[0].mcc"),
        Case(
            name: "an mcc out of range in exponent form",
            body: batch(transactionJSON("t1", extra: #","mcc":1e4"#)),
            field: "transactions[0].mcc"),
        Case(
            name: "metadata that is not strings",
            body: batch(transactionJSON("t1", extra: #","metadata":{"a":1}"#)),
            field: "transactions[0].metadata.a"),
        Case(
            name: "a period that ends before it starts", uri: "/v1/users/u1/savings",
            body:
                #"{"savings":[{"id":"s","actionId":"a","kgCO2e":1,"period":{"start":"2026-02-01T00:00:00Z","end":"2026-01-01T00:00:00Z"},"recordedAt":"2026-01-01T00:00:00Z"}]}"#,
            field: "savings[0].period"),
        Case(
            name: "kilograms with 7 decimals", uri: "/v1/users/u1/footprints",
            body:
                #"{"footprints":[{"id":"f","kgCO2e":"1.0000001","category":"c","methodology":"m","calculatedAt":"2026-01-01T00:00:00Z"}]}"#,
            field: "footprints[0].kgCO2e"),
        Case(
            name: "a text content type", body: batch(transactionJSON("t1")), status: 415,
            code: "unsupported_media_type", contentType: "text/plain"),
        Case(
            name: "a batch over the limit",
            body: batch(
                transactionJSON("a"), transactionJSON("b"), transactionJSON("c"), transactionJSON("d")),
            status: 413, code: "payload_too_large", field: "transactions"),
        Case(
            name: "a body over the limit",
            body: batch(
                transactionJSON("t1", extra: #","description":"\#(String(repeating: "x", count: 5000))""#)),
            status: 413, code: "payload_too_large"),
        Case(
            name: "a user id over the limit",
            uri: "/v1/users/\(String(repeating: "u", count: 65))/transactions",
            body: batch(transactionJSON("t1")),
            field: "userId"),
        Case(
            name: "a user id that is not UTF-8", uri: "/v1/users/%FF/transactions",
            body: batch(transactionJSON("t1")), field: "userId"),
        Case(
            name: "a bad escape in the user id", uri: "/v1/users/a%2/transactions",
            body: batch(transactionJSON("t1")), field: "userId"),
        Case(
            name: "a time outside years 1 to 9999",
            body: batch(transactionJSON("t1", time: "0001-01-01T00:00:00+01:00")),
            field: "transactions[0].time"),
        Case(
            name: "a time in milliseconds", body: batch(transactionJSON("t1", time: "@1000")),
            field: "transactions[0].time"),
        Case(
            name: "a charset other than UTF-8", body: batch(transactionJSON("t1")), status: 415,
            code: "unsupported_media_type", contentType: "application/json; charset=latin1"),
        Case(
            name: "kilograms in exponent form below a milligram", uri: "/v1/users/u1/footprints",
            body:
                #"{"footprints":[{"id":"f","kgCO2e":1e-7,"category":"c","methodology":"m","calculatedAt":"2026-01-01T00:00:00Z"}]}"#,
            field: "footprints[0].kgCO2e"),
        Case(
            name: "an empty metadata key",
            body: batch(transactionJSON("t1", extra: #","metadata":{"":"x"}"#)),
            field: "transactions[0].metadata."),
        Case(
            name: "a metadata key of 257 bytes",
            body: batch(
                transactionJSON(
                    "t1", extra: #","metadata":{""# + String(repeating: "k", count: 257) + #"":"x"}"#)),
            field: "transactions[0].metadata." + String(repeating: "k", count: 64)),
        Case(
            name: "a nesting bomb",
            body: String(repeating: "[", count: 100) + String(repeating: "]", count: 100)),
    ]

    @Test(arguments: cases) func isRefusedAndNothingIsWritten(_ c: Case) async throws {
        let service = try await TestService.memory { config in
            config.maxBatch = 3
            config.maxBodyBytes = 4096
            config.maxUserIDBytes = 64
        }
        try await service.application().test(.router) { client in
            let a = try await client.call(
                c.method, c.uri, role: .write, body: c.body, headers: [.contentType: c.contentType])
            #expect(a.status == c.status, "\(a.text)")
            #expect(a.code == c.code)
            if let field = c.field { #expect(a.field == field, "\(a.text)") }
            let message = a.error["message"] as? String ?? ""
            #expect(!message.isEmpty)
            #expect(a.error["requestId"] as? String == a.headers[.init("X-Request-Id")!])
            if c.status == 413 { #expect(a.error["limit"] as? Int != nil) }
            // Nothing was written, for any user.
            #expect(try await service.store.listUsers().userIDs.isEmpty)
        }
    }

    @Test func unknownRoutesAndMethodsAnswerJSON() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            let missing = try await client.call(.get, "/v2/nothing")
            #expect(missing.status == 404)
            #expect(missing.code == "not_found")
            let wrong = try await client.call(.put, "/v1/users/u1/transactions")
            #expect(wrong.status == 405)
            #expect(wrong.code == "method_not_allowed")
            #expect(wrong.headers[.allow] == "POST, GET, HEAD")
            let metrics = try await client.call(.get, "/metrics", role: nil)
            #expect(
                metrics.text.contains(
                    #"carbonstore_http_requests_total{method="PUT",route="/v1/users/{userId}/transactions",status="405"} 1"#
                ))
        }
    }

    @Test func aLockThatStaysHeldAnswers503WithRetryAfter() async throws {
        let service = try await TestService.memory("memory:?wait=200")
        let key = try service.store.keys.key(for: "u1")
        let lease = try await service.store.locks.acquire(key, userID: "u1", wait: .seconds(1))
        try await service.application().test(.router) { client in
            let a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")))
            #expect(a.status == 503)
            #expect(a.code == "lock_timeout")
            #expect(a.headers[.retryAfter] == "1")
            // The client hears that the user was locked, not who held it; the log has the holder.
            let message = a.error["message"] as? String ?? ""
            #expect(message.contains("u1") && !message.contains(lease.operationID))
            let line = service.logs.objects.first { $0["code"] == "lock_timeout" }
            #expect(line?["detail"]?.contains(lease.operationID) == true)
            try await service.store.locks.release(lease)
            #expect(try await service.store.read("u1") == nil)
            let metrics = try await client.call(.get, "/metrics", role: nil)
            #expect(metrics.text.contains("carbonstore_lock_timeouts_total 1"))
            #expect(metrics.text.contains(#"carbonstore_storage_errors_total{kind="lockTimeout"} 1"#))
        }
    }

    @Test func aCorruptUserFileAnswers500WithAnErrorIDAndIsLeftAlone() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let service = TestService(store: try await StoreFactory().makeStore("path:\(dir.path)"))
        _ = try await service.store.update("u1") {
            $0.setPreference("a", value: "b", at: Timestamp(millisecondsSince1970: 0))
        }
        let path = dir.path + "/" + (try service.store.keys.key(for: "u1"))
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try await service.application().test(.router) { client in
            for (method, uri, body) in [
                (HTTPRequest.Method.get, "/v1/users/u1", nil),
                (.post, "/v1/users/u1/transactions", batch(transactionJSON("t1"))),
            ] as [(HTTPRequest.Method, String, String?)] {
                let a = try await client.call(method, uri, role: .write, body: body)
                #expect(a.status == 500)
                #expect(a.code == "corrupt_user_file")
                let errorID = try #require(a.error["errorId"] as? String)
                #expect(!(a.error["message"] as? String ?? "").contains(dir.path))
                let line = service.logs.objects.first { $0["errorId"] == errorID && $0["level"] == "error" }
                #expect(line?["detail"]?.contains(path) == true)
                #expect(line?["requestId"] == a.error["requestId"] as? String)
            }
        }
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
    }

    /// A write to a user whose last change frame was damaged on disk is refused with a message
    /// that says so (reads serve the record before it), not "cannot be read".
    @Test func aWriteBehindADamagedTailSaysSo() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let writer = try await StoreFactory().makeStore("path:\(dir.path)")
        let path = dir.path + "/" + (try writer.keys.key(for: "u1"))
        // A snapshot and appended frames, the last of which does not end with a zero byte (one
        // in 256 does, and reads as torn when damaged: docs/FORMAT.md, 13.4).
        var end = 0
        for i in 0..<20 {
            _ = try await writer.update("u1") {
                $0.setPreference("k\(i)", value: "v", at: Timestamp(millisecondsSince1970: 0))
            }
            let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
            end = try RecordCodec().decodeFile(bytes).layout.validLength
            if i > 0, bytes[end - 1] != 0 { break }
        }
        var damaged = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        damaged[end - 30] ^= 0xFF
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        // A service that has not read the user before.
        let service = TestService(store: try await StoreFactory().makeStore("path:\(dir.path)"))
        try await service.application().test(.router) { client in
            let write = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")))
            #expect(write.status == 500 && write.code == "corrupt_user_file", "\(write.text)")
            let message = write.error["message"] as? String ?? ""
            #expect(message.contains("damaged bytes after its valid content"), "\(message)")
            #expect(message.contains("error id") && !message.contains(dir.path))
            #expect(try await client.call(.get, "/v1/users/u1", role: .read).status == 200)
        }
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == damaged)
    }

    @Test func aDrainingServiceTurnsNewRequestsAway() async throws {
        let service = try await TestService.memory()
        await service.drain.drain()
        try await service.application().test(.router) { client in
            let a = try await client.call(.get, "/v1/users/u1", role: .read)
            #expect(a.status == 503)
            #expect(a.code == "shutting_down")
            #expect(a.headers[.retryAfter] == "1")
            #expect(a.headers[.connection] == "close")
        }
    }

    @Test func requestIDsAreHonouredOrMadeAndLogged() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            let own = try await client.call(
                .get, "/healthz", role: nil, headers: [.init("X-Request-Id")!: "abc-123.x_y"])
            #expect(own.headers[.init("X-Request-Id")!] == "abc-123.x_y")
            let bad = try await client.call(
                .get, "/healthz", role: nil, headers: [.init("X-Request-Id")!: "bad id\u{1b}"])
            let made = try #require(bad.headers[.init("X-Request-Id")!])
            #expect(made != "bad id\u{1b}")
            #expect(made.count == 32)
        }
        let lines = service.logs.objects.filter { $0["message"] == "request" }
        #expect(
            lines.contains {
                $0["requestId"] == "abc-123.x_y" && $0["route"] == "/healthz" && $0["status"] == "200"
            })
        #expect(lines.allSatisfy { $0["requestId"] != nil })
    }

    @Test func keysAreCheckedAndNeverLogged() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            #expect(try await client.call(.get, "/v1/users/u1", role: nil).status == 401)
            let wrong = try await client.call(
                .get, "/v1/users/u1", role: nil, headers: [.authorization: "Bearer csk_nope"])
            #expect(wrong.status == 401)
            #expect(wrong.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            #expect(
                try await client.call(.get, "/v1/users/u1", role: nil, headers: [.authorization: "Basic abc"])
                    .status == 401)
            let read = try await client.call(
                .post, "/v1/users/u1/transactions", role: .read, body: batch(transactionJSON("t1")))
            #expect(read.status == 403)
            #expect(read.code == "forbidden")
            #expect(try await client.call(.get, "/v1/users/u1", role: .read).status == 404)
        }
        let all = service.logs.objects.map { $0.values.joined(separator: " ") }.joined(separator: "\n")
        for (_, key) in TestService.keys { #expect(!all.contains(key.key)) }
        #expect(service.logs.objects.contains { $0["keyId"] == TestService.keys[.read]!.entry.keyID })
    }

    /// An object of 60,000 members in one body: read in linear time (a quadratic check of
    /// duplicate members would take minutes here), and refused when one member repeats.
    @Test func aWideObjectIsReadWhole() async throws {
        let service = try await TestService.memory()
        let members = (0..<60_000).map { #""k\#($0)":"v""# }.joined(separator: ",")
        try await service.application().test(.router) { client in
            let a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1", extra: #","metadata":{\#(members)}"#)))
            #expect(a.status == 200, "\(a.text.prefix(300))")
            #expect(try await service.store.get("u1").transaction(id: "t1")?.metadata.count == 60_000)
            let repeated = try await client.call(
                .post, "/v1/users/u2/transactions", role: .write,
                body: batch(transactionJSON("t1", extra: #","metadata":{\#(members),"k17":"w"}"#)))
            #expect(repeated.status == 400)
            #expect((repeated.error["message"] as? String)?.contains("k17") == true)
        }
    }

    /// A metadata key of 256 bytes (here ending in a two-byte character) is accepted; one of 257
    /// bytes is refused (the cases above) with its length and the limit.
    @Test func aMetadataKeyOf256BytesIsAccepted() async throws {
        let service = try await TestService.memory()
        let key = String(repeating: "k", count: 254) + "\u{E9}"
        #expect(key.utf8.count == 256)
        let tooLong = String(repeating: "k", count: 255) + "\u{E9}"
        try await service.application().test(.router) { client in
            let a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1", extra: #","metadata":{""# + key + #"":"v"}"#)))
            #expect(a.status == 200, "\(a.text.prefix(300))")
            #expect(try await service.store.get("u1").transaction(id: "t1")?.metadata[key] == "v")
            let b = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t2", extra: #","metadata":{""# + tooLong + #"":"v"}"#)))
            #expect(b.status == 400)
            let message = b.error["message"] as? String ?? ""
            #expect(message.contains("at most 256 bytes") && message.contains("257"), "\(message)")
            #expect(try await service.store.get("u1").transaction(id: "t2") == nil)
        }
    }

    /// A compressed body is refused (415), not parsed as JSON; `identity` is no compression.
    @Test func aCompressedBodyIsRefused() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            for coding in ["gzip", "br", "identity, gzip"] {
                let a = try await client.call(
                    .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")),
                    headers: [.contentEncoding: coding])
                #expect(a.status == 415 && a.code == "unsupported_media_type", "\(coding): \(a.text)")
                #expect(a.headers[.acceptEncoding] == "identity")
            }
            let plain = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")),
                headers: [.contentEncoding: "identity"])
            #expect(plain.status == 200)
        }
        #expect(try await service.store.get("u1").transactions.count == 1)
    }

    /// The router drops empty segments: without a check, `/v1/users//transactions` would reach the
    /// user "transactions", and a DELETE with empty ids would erase someone else.
    @Test func anEmptyPathSegmentIsRefused() async throws {
        let service = try await TestService.memory()
        _ = try await service.store.update("transactions") {
            $0.setPreference("a", value: "b", at: Timestamp(millisecondsSince1970: 0))
        }
        try await service.application().test(.router) { client in
            for (method, uri) in [
                (HTTPRequest.Method.delete, "/v1/users//transactions"), (.get, "/v1/users//transactions"),
                (.delete, "/v1/users/transactions/"), (.put, "/v1/users/u//responses/q1"),
                // Not under /v1/ either: no route answers to a path that only looks like one.
                (.get, "//v1/users/transactions"), (.get, "/healthz/"), (.get, "/metrics/"),
                (.get, "//healthz"),
            ] {
                let a = try await client.call(method, uri, body: method == .put ? #"{"answer":1}"# : nil)
                #expect(a.status == 400, "\(method) \(uri): \(a.text)")
                #expect(a.code == "invalid_request")
            }
        }
        #expect(try await service.store.read("transactions") != nil)
        #expect(try await service.store.read("u") == nil)
    }

    @Test func readinessFailuresKeepTheDetailsInTheLog() async throws {
        let store = Store(storage: TroubledStorage(failList: true), locks: InProcessLockService())
        let service = TestService(store: store)
        try await service.application().test(.router) { client in
            let a = try await client.call(.get, "/readyz", role: nil)
            #expect(a.status == 503)
            #expect(a.code == "unavailable")
            #expect(a.headers[.retryAfter] == "5")
            #expect(!(a.error["message"] as? String ?? "").contains("errno"))
            let head = try await client.call(.head, "/healthz", role: nil)
            #expect(head.status == 200)
        }
        let line = service.logs.objects.first { $0["code"] == "unavailable" }
        #expect(line?["detail"]?.contains("list") == true)
    }

    /// A storage that can no longer be written (a volume remounted read-only) is not ready, although
    /// it still answers reads; a store opened for reading only does not ask.
    @Test func aStorageThatCannotBeWrittenIsNotReady() async throws {
        final class ReadOnlyVolume: ForwardingStorage, @unchecked Sendable {
            override func checkWritable() async throws {
                throw StorageIOError(operation: "open for writing", path: "/data", errno: EROFS)
            }
        }
        let service = TestService(
            store: Store(storage: ReadOnlyVolume(MemoryStorage()), locks: InProcessLockService()))
        try await service.application().test(.router) { client in
            let a = try await client.call(.get, "/readyz", role: nil)
            #expect(a.status == 503 && a.code == "unavailable", "\(a.text)")
        }
        let line = service.logs.objects.first { $0["code"] == "unavailable" }
        #expect(line?["detail"]?.contains("Read-only file system") == true, "\(service.logs.objects)")
        var options = StoreOptions()
        options.readOnly = true
        let reading = Store(
            storage: ReadOnlyVolume(MemoryStorage()), locks: InProcessLockService(), options: options)
        try await reading.checkReachable()
    }

    /// `/readyz` takes no key: a flood of probes costs one storage check a second (a listing and a
    /// lock lookup, paid requests on S3 and DynamoDB), not one per request.
    @Test func readinessChecksStorageAtMostOnceASecond() async throws {
        final class CountingLists: ForwardingStorage, @unchecked Sendable {
            let lists = CarbonStoreTestSupport.Locked(0)
            override func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing
            {
                lists.withLock { $0 += 1 }
                return try await super.list(prefix: prefix, startAfter: startAfter, limit: limit)
            }
        }
        let storage = CountingLists(MemoryStorage())
        let service = TestService(store: Store(storage: storage, locks: InProcessLockService()))
        try await service.application().test(.router) { client in
            let started = ContinuousClock.now
            for _ in 0..<50 { #expect(try await client.call(.get, "/readyz", role: nil).status == 200) }
            let elapsed = ContinuousClock.now - started
            let seconds = Int(elapsed.components.seconds) + 1
            #expect(
                storage.lists.withLock { $0 } <= seconds,
                "\(storage.lists.withLock { $0 }) checks in \(elapsed)")
            try await Task.sleep(for: .milliseconds(1100))
            #expect(try await client.call(.get, "/readyz", role: nil).status == 200)
            #expect(storage.lists.withLock { $0 } >= 2, "a check older than a second was served")
        }
    }

    /// A storage that is misconfigured (a missing bucket or table, refused credentials) is not the
    /// client's fault and not the client's business: 500 with an error id, the text in the log.
    @Test func aMisconfiguredStorageIsAServerErrorWithoutItsDetails() async throws {
        let store = Store(storage: TroubledStorage(), locks: InProcessLockService())
        let service = TestService(store: store)
        try await service.application().test(.router) { client in
            let before = try await client.call(.get, "/metrics", role: nil)
            #expect(before.text.contains(#"carbonstore_storage_errors_total{kind="invalidInput"} 0"#))
            for (method, uri, body) in [
                (HTTPRequest.Method.get, "/v1/users/misconfigured", nil),
                (.post, "/v1/users/misconfigured/transactions", batch(transactionJSON("t1"))),
            ] as [(HTTPRequest.Method, String, String?)] {
                let a = try await client.call(method, uri, role: .write, body: body)
                #expect(a.status == 500, "\(a.text)")
                #expect(a.code == "internal_error")
                let errorID = try #require(a.error["errorId"] as? String)
                #expect(!a.text.contains("secret-bucket"))
                let line = service.logs.objects.first { $0["errorId"] == errorID && $0["level"] == "error" }
                #expect(line?["detail"]?.contains("secret-bucket") == true)
            }
            let after = try await client.call(.get, "/metrics", role: nil)
            #expect(after.text.contains(#"carbonstore_storage_errors_total{kind="invalidInput"} 2"#))
        }
    }
}
