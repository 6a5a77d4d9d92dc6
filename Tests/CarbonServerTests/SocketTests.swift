import CarbonModel
import CarbonServer
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `carbonstore serve` as a process, over a real socket: keys, limits, slow clients, request ids.
@Suite(.serialized) struct SocketTests {
    /// A key of each role, made with `APIKeys.newKey`, for the tests that are not about keys.
    static let keys: [Role: (key: String, entry: APIKeyEntry)] = Dictionary(
        uniqueKeysWithValues: Role.allCases.map { ($0, APIKeys.newKey(role: $0)) })

    static var keyEntries: String { keys.values.map(\.entry.entry).joined(separator: ",") }

    static func auth(_ role: Role) -> (String, String) { bearer(keys[role]!.key) }

    /// Starts `serve` on a fresh `path:` directory with the keys above and `environment`.
    static func start(_ environment: [String: String] = [:]) throws -> (
        server: ServeProcess, port: Int, dir: TemporaryDirectory
    ) {
        let dir = try TemporaryDirectory("socket")
        let server = try ServeProcess.serve(
            environment: ["CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_API_KEYS": keyEntries]
                .merging(environment) { $1 })
        do {
            return (server, try server.waitForPort(), dir)
        } catch {
            server.stop()
            dir.remove()
            throw error
        }
    }

    // MARK: - Keys

    @Test func keysAreCheckedOverTheSocketAndNeverLogged() async throws {
        let read = try newKey(role: "read")
        let write = try newKey(role: "write")
        let admin = try newKey(role: "admin")
        for k in [read, write, admin] {
            #expect(k.key.hasPrefix("csk_") && k.key.count > 40)
            #expect(
                k.entry.range(of: #"^(read|write|admin):[0-9a-f]{64}$"#, options: .regularExpression) != nil)
        }
        let dir = try TemporaryDirectory("socket-keys")
        defer { dir.remove() }
        let server = try ServeProcess.serve(environment: [
            "CARBONSTORE_STORAGE": "path:" + dir.path,
            "CARBONSTORE_API_KEYS": [read.entry, write.entry, admin.entry].joined(separator: ","),
        ])
        defer { server.stop() }
        let port = try await offPool { try server.waitForPort() }
        let batch = transactionBatch(id: "t1")

        func expectUnauthorized(_ r: HTTPResponse, _ comment: Comment) {
            #expect(r.status == 401, comment)
            #expect(r.error?["code"] as? String == "unauthorized", comment)
            #expect(r.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, comment)
            #expect(r.header("Content-Type")?.hasPrefix("application/json") == true, comment)
            #expect(r.error?["requestId"] as? String == r.header("X-Request-Id"), comment)
        }
        expectUnauthorized(try await httpRequest(port: port, "GET", "/v1/users/u1"), "no Authorization")
        expectUnauthorized(
            try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [bearer("wrong-k3y-7f3a")]),
            "Bearer wrong")
        expectUnauthorized(
            try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [("Authorization", "Basic x")]),
            "Basic x")
        expectUnauthorized(
            try await httpRequest(
                port: port, "GET", "/v1/users/u1", headers: [("Authorization", "Basic \(admin.key)")]),
            "the admin key under another scheme")
        expectUnauthorized(
            try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [bearer(admin.key + "x")]),
            "the admin key with one character more")
        expectUnauthorized(
            try await httpRequest(
                port: port, "POST", "/v1/users/u1/transactions", body: batch), "a write without a key")

        // A role too low: 403, and nothing written.
        let readWrites = try await httpRequest(
            port: port, "POST", "/v1/users/u1/transactions", headers: [bearer(read.key)], body: batch)
        #expect(readWrites.status == 403, "\(readWrites)")
        #expect(readWrites.error?["code"] as? String == "forbidden")
        let writeLists = try await httpRequest(port: port, "GET", "/v1/users", headers: [bearer(write.key)])
        #expect(writeLists.status == 403, "\(writeLists)")
        #expect(writeLists.error?["code"] as? String == "forbidden")
        let writeErases = try await httpRequest(
            port: port, "DELETE", "/v1/users/u1", headers: [bearer(write.key)])
        #expect(writeErases.status == 403, "\(writeErases)")
        #expect(
            try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [bearer(read.key)]).status
                == 404)

        // Each key does what its role allows.
        let added = try await httpRequest(
            port: port, "POST", "/v1/users/u1/transactions", headers: [bearer(write.key)], body: batch)
        #expect(added.status == 200, "\(added)")
        #expect(((added.json?["results"] as? [[String: Any]])?.first?["status"] as? String) == "added")
        let got = try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [bearer(read.key)])
        #expect(got.status == 200, "\(got)")
        let listed = try await httpRequest(port: port, "GET", "/v1/users", headers: [bearer(admin.key)])
        #expect(listed.status == 200, "\(listed)")
        #expect(listed.json?["users"] as? [String] == ["u1"])
        let adminAdds = try await httpRequest(
            port: port, "POST", "/v1/users/u1/transactions", headers: [bearer(admin.key)],
            body: transactionBatch(id: "t2"))
        #expect(adminAdds.status == 200, "\(adminAdds)")
        // The scheme is case-insensitive (RFC 9110).
        let lower = try await httpRequest(
            port: port, "GET", "/v1/users/u1", headers: [("Authorization", "bearer \(read.key)")])
        #expect(lower.status == 200, "\(lower)")

        server.signal(SIGTERM)
        let end = try await offPool { server.waitForExit(timeout: .seconds(20)) }
        #expect(end == .exit(0), "stderr: \(server.stderr)")
        // No key, nor its secret part, in any output; the request lines name the key by its id.
        let output = server.stdout + server.stderr
        for k in [read, write, admin] {
            #expect(!output.contains(k.key))
            #expect(!output.contains(String(k.key.dropFirst(4))))
        }
        #expect(!output.contains("wrong-k3y-7f3a"))
        let requests = server.logLines.compactMap(\.object).filter { $0["message"] == "request" }
        #expect(requests.count >= 15)
        #expect(requests.contains { $0["status"] == "200" && $0["keyId"]?.count == 8 })
        #expect(requests.allSatisfy { $0["status"] != "401" || $0["keyId"] == nil })
    }

    // MARK: - Limits

    @Test func aDeclaredBodyOverTheLimitGets413BeforeItIsSent() async throws {
        let (server, port, dir) = try Self.start(["CARBONSTORE_MAX_BODY_BYTES": "2048"])
        defer {
            server.stop()
            dir.remove()
        }
        let started = ContinuousClock.now
        let (response, closedAfter) = try await offPool { () -> (HTTPResponse, Duration?) in
            let c = try RawConnection(port: port)
            // A head that announces a million bytes, and only the first few of them.
            try c.send(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.keys[.write]!.key)\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"transactions\": ["
            )
            let r = try c.readResponse(timeout: .seconds(10))
            return (r, try c.waitForClose(timeout: .seconds(10)))
        }
        #expect(response.status == 413, "\(response)")
        #expect(response.error?["code"] as? String == "payload_too_large")
        #expect(response.error?["limit"] as? Int == 2048)
        #expect(response.header("Connection")?.lowercased() == "close")
        #expect(closedAfter != nil, "the server kept the connection open, waiting for the rest of the body")
        #expect(ContinuousClock.now - started < .seconds(8))
        let user = try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [Self.auth(.read)])
        #expect(user.status == 404, "\(user)")
        // The server is still well.
        #expect(try await httpRequest(port: port, "GET", "/healthz").status == 200)
    }

    @Test func aChunkedBodyThatGrowsPastTheLimitGets413() async throws {
        let (server, port, dir) = try Self.start(["CARBONSTORE_MAX_BODY_BYTES": "2048"])
        defer {
            server.stop()
            dir.remove()
        }
        let (response, sent) = try await offPool { () -> (HTTPResponse, Int) in
            let c = try RawConnection(port: port)
            try c.send(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.keys[.write]!.key)\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            // Chunks of 512 bytes of valid JSON's start, up to 40 of them (20 KiB), until the server answers.
            let chunk = "200\r\n" + "{\"transactions\": [" + String(repeating: " ", count: 512 - 18) + "\r\n"
            var sent = 0
            for _ in 0..<40 {
                if c.readable(within: .milliseconds(100)) { break }
                do { try c.send(chunk) } catch { break }
                sent += 512
            }
            return (try c.readResponse(timeout: .seconds(10)), sent)
        }
        #expect(response.status == 413, "\(response)")
        #expect(response.error?["code"] as? String == "payload_too_large")
        #expect(response.error?["limit"] as? Int == 2048)
        #expect(sent > 2048)
        #expect(sent < 40 * 512, "the server answered only after the whole body")
        let user = try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [Self.auth(.read)])
        #expect(user.status == 404, "\(user)")
    }

    // MARK: - Bodies nobody reads

    /// A route that reads no body answers at once; the body it was sent is read and dropped up to
    /// eight times the body limit (1 MiB by default) only, then the connection is closed: a client cannot
    /// make the service read an endless body, with or without a key.
    @Test(arguments: ["/healthz", "/v1/users/alice"])
    func aBodyNobodyReadsIsNotReadForEver(path: String) async throws {
        let (server, port, dir) = try Self.start([:])
        defer {
            server.stop()
            dir.remove()
        }
        let (status, sent, closed) = try await offPool { () -> (Int, Int, Bool) in
            let c = try RawConnection(port: port)
            try c.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000000\r\n\r\n")
            let answer = try c.readResponse(timeout: .seconds(10))
            let chunk = [UInt8](repeating: 0x20, count: 16 << 10)
            var sent = 0
            // Up to 64 MiB: the service reads about 8 MiB of it; the rest waits in buffers, then fails.
            while sent < 64 << 20 {
                do { try c.send(chunk) } catch { break }
                sent += chunk.count
                if c.readable(within: .zero), try c.waitForClose(timeout: .milliseconds(1)) != nil { break }
            }
            return (answer.status, sent, try c.waitForClose(timeout: .seconds(10)) != nil)
        }
        #expect(status == 200 || status == 401, "\(status)")
        #expect(closed, "the connection stayed open")
        #expect(sent < 48 << 20, "the service read \(sent) bytes of a body nobody reads")
        #expect(try await httpRequest(port: port, "GET", "/healthz").status == 200)
    }

    /// A body within the limit sent to a request answered before reading it (a 401) is read and
    /// dropped whole: the client gets its answer, and the connection carries the next request.
    @Test func aBodyWithinTheLimitToAnEarlyAnswerKeepsTheConnection() async throws {
        let (server, port, dir) = try Self.start([:])
        defer {
            server.stop()
            dir.remove()
        }
        let (first, second) = try await offPool { () -> (Int, Int) in
            let c = try RawConnection(port: port)
            let body = String(repeating: " ", count: 1_000_000)
            try c.send(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
                    + body)
            let first = try c.readResponse(timeout: .seconds(10))
            try c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return (first.status, try c.readResponse(timeout: .seconds(10)).status)
        }
        #expect(first == 401)
        #expect(second == 200)
    }

    /// After an answer that ends the connection (a 413 for a declared length; the answer to a request
    /// with `Upgrade`, after which the decoder reads nothing more; an HTTP/1.0 request), the service
    /// drops at most 1 MiB more of what the client goes on sending, then closes: not gigabytes read
    /// or buffered until the header timeout.
    @Test(arguments: [
        "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer WRITE\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ])
    func afterAnAnswerThatEndsTheConnectionTheRestIsNotReadForEver(request: String) async throws {
        let (server, port, dir) = try Self.start(["CARBONSTORE_MAX_BODY_BYTES": "2048"])
        defer {
            server.stop()
            dir.remove()
        }
        let (status, sent, closedAfter) = try await offPool { () -> (Int, Int, Duration?) in
            let c = try RawConnection(port: port)
            try c.send(request.replacingOccurrences(of: "WRITE", with: Self.keys[.write]!.key))
            let answer = try c.readResponse(timeout: .seconds(10))
            // Up to 256 MiB: what the service takes of it before it closes, plus the buffers.
            let sent = c.sendSpacesUntilRefused()
            return (answer.status, sent, try c.waitForClose(timeout: .seconds(5)))
        }
        #expect(status == 413 || status == 200, "\(status)")
        #expect(sent < 128 << 20, "the service went on taking what was sent: \(sent) bytes")
        #expect(closedAfter != nil, "the connection stayed open")
    }

    /// A body within the limit sent in chunks of one byte (five bytes of framing each) to a request
    /// answered before reading it: read and dropped whole, and the client, which reads only once it
    /// has sent everything, gets its answer, whether the connection is kept or ends with it.
    @Test(arguments: [false, true])
    func aFinelyChunkedBodyWithinTheLimitGetsItsAnswer(ends: Bool) async throws {
        // A limit of 256 KiB: 250,000 bytes of body are 1.5 MB on the wire, more than twice the limit
        // and more than an ending answer's 1 MiB linger.
        let (server, port, dir) = try Self.start(["CARBONSTORE_MAX_BODY_BYTES": "262144"])
        defer {
            server.stop()
            dir.remove()
        }
        let (first, second) = try await offPool { () -> (Int, Int?) in
            let c = try RawConnection(port: port)
            var raw = Array(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\(ends ? "Connection: close\r\n" : "")Transfer-Encoding: chunked\r\n\r\n"
                    .utf8)
            let chunk = Array("1\r\n \r\n".utf8)
            raw.reserveCapacity(raw.count + 250_000 * chunk.count + 5)
            for _ in 0..<250_000 { raw += chunk }
            raw += Array("0\r\n\r\n".utf8)
            try c.send(raw)
            let first = try c.readResponse(timeout: .seconds(30))
            guard !ends else { return (first.status, nil) }
            try c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return (first.status, try c.readResponse(timeout: .seconds(10)).status)
        }
        #expect(first == 401)
        if !ends { #expect(second == 200) }
    }

    /// An answer that ends the connection and takes long to write (a large page to a client that
    /// does not read), after an `Upgrade` that stops the decoder: what the client sends meanwhile is
    /// counted from the answer's first byte, and the connection is closed past 1 MiB, instead of
    /// being taken in until the send timeout.
    @Test func whileALargeAnswerThatEndsTheConnectionIsWrittenLittleIsTakenIn() async throws {
        let (server, port, dir) = try Self.start([:])
        defer {
            server.stop()
            dir.remove()
        }
        // A page of about 8 MB of JSON: more than the kernel's buffers take, so its writing lasts
        // while the client does not read.
        let text = String(repeating: "d", count: 4000)
        for part in 0..<10 {
            let items = (0..<110).map {
                transactionJSON("t\(part)-\($0)", extra: #","description":"\#(text)","merchant":"\#(text)""#)
            }
            let body = #"{"transactions":[\#(items.joined(separator: ","))]}"#
            let added = try await httpRequest(
                port: port, "POST", "/v1/users/big/transactions", headers: [Self.auth(.write)], body: body)
            #expect(added.status == 200, "\(added.status)")
        }
        let (sent, closed) = try await offPool { () -> (Int, Bool) in
            let c = try RawConnection(port: port, receiveBuffer: 4096)
            try c.send(
                "GET /v1/users/big/transactions?limit=1000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(Self.keys[.read]!.key)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            usleep(300_000)
            let sent = c.sendSpacesUntilRefused()
            // The answer is never read: the connection's end shows as a failed send or a reset.
            return (sent, (try? c.waitForClose(timeout: .seconds(5))) != nil || sent < 256 << 20)
        }
        #expect(sent < 128 << 20, "the service took in \(sent) bytes while writing its answer")
        #expect(closed)
    }

    // MARK: - Connection persistence

    /// RFC 9112 §9.3: an HTTP/1.0 request without keep-alive ends its connection after the answer,
    /// which says so; with `Connection: keep-alive` the connection carries the next request.
    @Test func anHTTP10RequestEndsItsConnectionUnlessItAsksToKeepIt() async throws {
        let (server, port, dir) = try Self.start([:])
        defer {
            server.stop()
            dir.remove()
        }
        try await offPool {
            let plain = try RawConnection(port: port)
            try plain.send("GET /healthz HTTP/1.0\r\n\r\n")
            let answer = try plain.readResponse(timeout: .seconds(10))
            #expect(answer.status == 200, "\(answer)")
            #expect(answer.header("Connection")?.lowercased() == "close")
            #expect(try plain.waitForClose(timeout: .seconds(10)) != nil, "the connection stayed open")

            // Sent together: the first answer must not say close on account of the second request.
            let kept = try RawConnection(port: port)
            try kept.send(
                "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                    + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let first = try kept.readResponse(timeout: .seconds(10))
            let second = try kept.readResponse(timeout: .seconds(10))
            #expect(first.status == 200 && second.status == 200, "\(first) \(second)")
            #expect(first.header("Connection")?.lowercased() != "close")
            #expect(second.header("Connection")?.lowercased() == "close")
            #expect(try kept.waitForClose(timeout: .seconds(10)) != nil)

            // HTTP/1.1 stays open by default.
            let persistent = try RawConnection(port: port)
            try persistent.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try persistent.readResponse(timeout: .seconds(10)).status == 200)
            try persistent.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try persistent.readResponse(timeout: .seconds(10)).status == 200)
        }
    }

    /// RFC 9112 §3.2 and §6.1: exactly one valid Host, no transfer coding but chunked; CONNECT is
    /// no proxy request here, and a request to change the protocol ends its connection (the decoder
    /// reads nothing after it) instead of stalling it. Each such answer closes the connection.
    @Test(
        arguments: [
            ("GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_request"),
            ("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "invalid_request"),
            ("GET /healthz HTTP/1.1\r\nHost: a b/c@@\r\n\r\n", 400, "invalid_request"),
            (
                "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
                "not_implemented"
            ),
            ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501, nil),
            (
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 200,
                nil
            ),
            // The marker between the decoder and the application cannot be sent by a client.
            ("GET /healthz HTTP/1.1\r\nHost: x\r\ncarbonstore-request-problem: connect\r\n\r\n", 200, nil),
            ("GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200, nil),
            ("GET /healthz HTTP/1.1\r\nHost: example.com \t\r\n\r\n", 200, nil),
        ] as [(String, Int, String?)])
    func requestFramingIsCheckedAndEndsTheConnectionWhenRefused(request: String, status: Int, code: String?)
        async throws
    {
        let (server, port, dir) = try Self.start([:])
        defer {
            server.stop()
            dir.remove()
        }
        let (answer, closed) = try await offPool { () -> (HTTPResponse, Bool) in
            let c = try RawConnection(port: port)
            try c.send(request)
            let answer = try c.readResponse(timeout: .seconds(10))
            // Whatever ends the connection ends it at once; a kept one carries the next request.
            return (answer, try c.waitForClose(timeout: .seconds(2)) != nil)
        }
        #expect(answer.status == status, "\(answer)")
        if let code {
            #expect(answer.error?["code"] as? String == code, "\(answer)")
            #expect((answer.error?["message"] as? String)?.contains("storage") == false, "\(answer)")
            #expect(answer.error?["errorId"] == nil, "\(answer)")
        }
        let kept = status == 200 && !request.contains("Upgrade")
        #expect(closed == !kept, "\(request): closed \(closed)")
        if !kept { #expect(answer.header("Connection")?.lowercased() == "close") }
    }

    // MARK: - Slow clients

    @Test func aClientTricklingItsHeadIsDisconnected() async throws {
        // The idle timeout stays at its default (60 s): only the header timeout can cut this one.
        let (server, port, dir) = try Self.start(["CARBONSTORE_HEADER_TIMEOUT_MS": "500"])
        defer {
            server.stop()
            dir.remove()
        }
        async let trickle = offPool { () -> (elapsed: Duration, closed: Bool, sentBytes: Int) in
            let c = try RawConnection(port: port)
            let started = ContinuousClock.now
            try c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            var sentBytes = 0
            for byte in Array(("X-Slow: " + String(repeating: "a", count: 100)).utf8) {
                if c.readable(within: .milliseconds(200)) { break }
                do { try c.send([byte]) } catch { break }
                sentBytes += 1
            }
            let closed = try c.waitForClose(timeout: .seconds(10)) != nil
            return (ContinuousClock.now - started, closed, sentBytes)
        }
        // Another connection meanwhile is served as usual.
        try await Task.sleep(for: .milliseconds(250))
        let normal = try await httpRequest(port: port, "GET", "/healthz")
        #expect(normal.status == 200, "\(normal)")
        let result = try await trickle
        #expect(result.closed, "still open after \(result.elapsed)")
        #expect(result.elapsed < .seconds(5), "closed after \(result.elapsed)")
        #expect(result.elapsed >= .milliseconds(400), "closed after \(result.elapsed), before the timeout")
        #expect(result.sentBytes >= 1)
        #expect(try await httpRequest(port: port, "GET", "/healthz").status == 200)
    }

    @Test func aClientTricklingItsBodyIsDisconnected() async throws {
        let (server, port, dir) = try Self.start(["CARBONSTORE_BODY_TIMEOUT_MS": "500"])
        defer {
            server.stop()
            dir.remove()
        }
        let body = Array(transactionBatch(id: "t1").utf8)
        let result = try await offPool { () -> (elapsed: Duration, closed: Bool, sentBytes: Int) in
            let c = try RawConnection(port: port)
            try c.send(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.keys[.write]!.key)\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            let started = ContinuousClock.now
            var sentBytes = 0
            for byte in body {
                if c.readable(within: .milliseconds(200)) { break }
                do { try c.send([byte]) } catch { break }
                sentBytes += 1
            }
            let closed = try c.waitForClose(timeout: .seconds(10)) != nil
            return (ContinuousClock.now - started, closed, sentBytes)
        }
        #expect(result.closed, "still open after \(result.elapsed)")
        #expect(result.elapsed < .seconds(5), "closed after \(result.elapsed)")
        #expect(result.sentBytes < body.count)
        let user = try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [Self.auth(.read)])
        #expect(user.status == 404, "\(user)")
        #expect(try await httpRequest(port: port, "GET", "/healthz").status == 200)
    }

    @Test func anIdleConnectionIsLeftToTheIdleTimeout() async throws {
        let (server, port, dir) = try Self.start([
            "CARBONSTORE_HEADER_TIMEOUT_MS": "500", "CARBONSTORE_IDLE_TIMEOUT_MS": "1500",
        ])
        defer {
            server.stop()
            dir.remove()
        }
        // One connection that never sends a byte, one that sends a request, keeps the connection
        // and then sends nothing more.
        async let silent = offPool { () -> Duration? in
            let c = try RawConnection(port: port)
            return try c.waitForClose(timeout: .seconds(10))
        }
        async let afterRequest = offPool { () -> (HTTPResponse, Duration?) in
            let c = try RawConnection(port: port)
            try c.send(RawConnection.request("GET", "/healthz", keepAlive: true))
            let r = try c.readResponse(timeout: .seconds(10))
            return (r, try c.waitForClose(timeout: .seconds(10)))
        }
        let silentClosed = try await silent
        let (response, keptClosed) = try await afterRequest
        #expect(response.status == 200, "\(response)")
        #expect(response.header("Connection")?.lowercased() != "close")
        for (name, closed) in [("silent", silentClosed), ("after a request", keptClosed)] {
            let closed = try #require(closed, "\(name): still open after 10 s")
            #expect(closed >= .milliseconds(1200), "\(name): closed after \(closed), before the idle timeout")
            #expect(closed < .seconds(5), "\(name): closed after \(closed)")
        }
    }

    // MARK: - Request ids

    @Test func requestIDsAreEchoedOrMadeAndOnEveryLogLine() async throws {
        let (server, port, dir) = try Self.start()
        defer {
            server.stop()
            dir.remove()
        }
        let echoed = try await httpRequest(
            port: port, "GET", "/healthz", headers: [("X-Request-Id", "abc-123")])
        #expect(echoed.status == 200)
        #expect(echoed.header("X-Request-Id") == "abc-123")
        let notFound = try await httpRequest(
            port: port, "GET", "/v1/users/nobody", headers: [("X-Request-Id", "abc-456"), Self.auth(.read)])
        #expect(notFound.status == 404, "\(notFound)")
        #expect(notFound.header("X-Request-Id") == "abc-456")
        #expect(notFound.error?["requestId"] as? String == "abc-456")
        let longest = String(repeating: "A", count: 128)
        #expect(
            try await httpRequest(port: port, "GET", "/healthz", headers: [("X-Request-Id", longest)])
                .header("X-Request-Id") == longest)

        var generated: [String] = []
        for bad in ["bad id!", String(repeating: "a", count: 200), "a/b"] {
            let r = try await httpRequest(port: port, "GET", "/v1/users", headers: [("X-Request-Id", bad)])
            #expect(r.status == 401)
            let id = try #require(r.header("X-Request-Id"))
            #expect(id != bad)
            #expect(id.range(of: "^[0-9a-f]{32}$", options: .regularExpression) != nil, "\(id)")
            #expect(r.error?["requestId"] as? String == id)
            generated.append(id)
        }
        let none = try await httpRequest(port: port, "GET", "/healthz")
        let noneID = try #require(none.header("X-Request-Id"))
        generated.append(noneID)
        #expect(Set(generated).count == generated.count)

        let line = try await offPool {
            try server.waitForLogLine { $0["requestId"] == "abc-123" && $0["message"] == "request" }
        }
        #expect(line["route"] == "/healthz")
        #expect(line["status"] == "200")
        #expect(line["method"] == "GET")
        let line404 = try await offPool { try server.waitForLogLine { $0["requestId"] == "abc-456" } }
        #expect(line404["status"] == "404")
        #expect(line404["code"] == "not_found")
        for id in generated {
            _ = try await offPool { try server.waitForLogLine { $0["requestId"] == id } }
        }

        server.signal(SIGTERM)
        let end = try await offPool { server.waitForExit(timeout: .seconds(20)) }
        #expect(end == .exit(0), "stderr: \(server.stderr)")
        // Every line of stdout is one JSON object; every line about a request has its id.
        let lines = server.logLines
        #expect(lines.count >= 8)
        for l in lines {
            let object = try #require(l.object, "not a JSON object of strings: \(l.text)")
            #expect(object["time"] != nil && object["level"] != nil && object["message"] != nil, "\(l.text)")
            if object["route"] != nil || object["method"] != nil || object["status"] != nil
                || object["errorId"] != nil
            {
                #expect(object["requestId"]?.isEmpty == false, "\(l.text)")
            }
        }
        #expect(!server.stdout.contains("bad id!"))
        #expect(lines.compactMap(\.object).filter { $0["message"] == "request" }.count == 7)
    }

    /// A client that asks for large answers and never reads them: without a send timeout the
    /// answers wait in the server's memory for as long as the client likes.
    @Test func aClientThatStopsReadingIsDisconnected() async throws {
        let (server, port, dir) = try Self.start(["CARBONSTORE_SEND_TIMEOUT_MS": "500"])
        defer {
            server.stop()
            dir.remove()
        }
        // A user of about 2 MB of JSON, written through the engine.
        let store = try await StoreFactory().makeStore("path:" + dir.path)
        _ = try await store.update("big") { record in
            for i in 0..<4000 {
                try record.upsert(
                    Transaction(
                        id: "t\(i)", time: Timestamp(millisecondsSince1970: Int64(i) * 1000),
                        amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!),
                        description: String(repeating: "d", count: 400)))
            }
        }
        let request =
            "GET /v1/users/big HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.keys[.read]!.key)\r\n\r\n"
        let closedAfter = try await offPool { () -> Duration? in
            let c = try RawConnection(port: port, receiveBuffer: 4096)
            try c.send(String(repeating: request, count: 4))
            Thread.sleep(forTimeInterval: 3)
            // Read now: a server that kept the connection would deliver all four answers and
            // stay open; one that gave up on the client has closed it.
            return try c.waitForClose(timeout: .seconds(8))
        }
        #expect(closedAfter != nil, "the connection stayed open")
        #expect(try await httpRequest(port: port, "GET", "/healthz").status == 200)
    }

    /// A client that closes the connection inside its body is not a storage failure: no 500 is
    /// logged or counted.
    @Test func aBodyCutShortIsNotAServerError() async throws {
        let (server, port, dir) = try Self.start()
        defer {
            server.stop()
            dir.remove()
        }
        try await offPool {
            let c = try RawConnection(port: port)
            try c.send(
                "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.keys[.write]!.key)\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"transactions\""
            )
        }
        // The connection is gone (the RawConnection was released); give the server a moment.
        try await Task.sleep(for: .milliseconds(300))
        let metrics = try await httpRequest(port: port, "GET", "/metrics")
        #expect(
            !String(decoding: metrics.body, as: UTF8.self).contains(#"status="500""#),
            "\(String(decoding: metrics.body, as: UTF8.self).prefix(2000))")
        #expect(
            String(decoding: metrics.body, as: UTF8.self).contains(
                #"route="/v1/users/{userId}/transactions",status="400""#))
        #expect(
            try await httpRequest(port: port, "GET", "/v1/users/u1", headers: [Self.auth(.read)]).status
                == 404)
    }

    /// What the HTTP parser refuses before there is a request gets the service's error body and a
    /// request id too, and is counted.
    @Test func requestsTheParserRefusesGetTheJSONErrorBody() async throws {
        let (server, port, dir) = try Self.start()
        defer {
            server.stop()
            dir.remove()
        }
        for payload in [
            "GARBAGE LINE\r\n\r\n",
            "POST /v1/users/u1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let response = try await offPool { () -> HTTPResponse in
                let c = try RawConnection(port: port)
                try c.send(payload)
                return try c.readResponse(timeout: .seconds(10))
            }
            #expect(response.status == 400)
            #expect(response.header("content-type") == "application/json")
            let requestID = try #require(response.header("x-request-id"))
            let body = try #require(
                try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: String]])
            #expect(body["error"]?["code"] == "invalid_request")
            #expect(body["error"]?["requestId"] == requestID)
        }
        let metrics = try await httpRequest(port: port, "GET", "/metrics")
        #expect(
            String(decoding: metrics.body, as: UTF8.self).contains(
                #"carbonstore_http_requests_total{method="unparsed",route="unparsed",status="400"} 2"#))
    }
}
