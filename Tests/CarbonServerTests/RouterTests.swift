import CarbonModel
import CarbonServer
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// One answer, with its body read as JSON.
struct Answer {
    var status: Int
    var headers: HTTPFields
    var text: String
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }
    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    var code: String? { error["code"] as? String }
    var field: String? { error["field"] as? String }
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, role: Role? = .admin, body: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> Answer {
        var h = headers
        if let role { h[.authorization] = "Bearer \(TestService.keys[role]!.key)" }
        if body != nil, h[.contentType] == nil { h[.contentType] = "application/json" }
        let response = try await execute(
            uri: uri, method: method, headers: h, body: body.map { ByteBuffer(string: $0) })
        return Answer(
            status: Int(response.status.code), headers: response.headers,
            text: String(buffer: response.body))
    }
}

func transactionJSON(
    _ id: String, time: String = "2026-03-01T09:30:00Z", amount: String = "12.34", currency: String = "EUR",
    extra: String = ""
) -> String {
    #"{"id":"\#(id)","time":"\#(time)","amount":{"amount":"\#(amount)","currency":"\#(currency)"}\#(extra)}"#
}

func batch(_ items: String...) -> String { #"{"transactions":[\#(items.joined(separator: ","))]}"# }

@Suite struct RouterTests {
    @Test func transactionsAreAddedIdempotentlyAndConflictsAreReported() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            var a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1"), transactionJSON("t2")))
            #expect(a.status == 200)
            #expect(a.json["revision"] as? Int == 1)
            #expect(
                (a.json["results"] as? [[String: Any]])?.map { $0["status"] as? String } == [
                    "added", "added",
                ])
            // Retried: nothing changes.
            a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")))
            #expect(a.status == 200)
            #expect(a.json["revision"] as? Int == 1)
            #expect((a.json["results"] as? [[String: Any]])?.first?["status"] as? String == "unchanged")
            // The same id with other content conflicts; the other item is still added.
            a = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1", amount: "99"), transactionJSON("t3")))
            #expect(a.status == 200)
            let results = a.json["results"] as? [[String: Any]] ?? []
            #expect(results.map { $0["status"] as? String } == ["conflicting", "added"])
            #expect((results.first?["message"] as? String)?.contains("already exists") == true)
            #expect(a.json["revision"] as? Int == 2)
            let record = try await service.store.get("u1")
            #expect(record.transactions.map(\.id) == ["t1", "t2", "t3"])
            #expect(record.transaction(id: "t1")?.amount.decimalString == "12.34")
        }
    }

    @Test func transactionsAreListedByRangeAndPagedWithACursor() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            let items = (0..<7).map { transactionJSON("t\($0)", time: "2026-0\($0 + 1)-15T00:00:00Z") }
            let add = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: #"{"transactions":[\#(items.joined(separator: ","))]}"#)
            #expect(add.status == 200)
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                var uri =
                    "/v1/users/u1/transactions?from=2026-02-01T00:00:00Z&to=2026-07-01T00:00:00Z&limit=2"
                if let cursor { uri += "&cursor=\(cursor)" }
                let a = try await client.call(.get, uri, role: .read)
                #expect(a.status == 200)
                seen += (a.json["transactions"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = a.json["nextCursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == ["t1", "t2", "t3", "t4", "t5"])
            #expect(pages == 3)

            let one = try await client.call(.get, "/v1/users/u1/transactions/t3", role: .read)
            #expect(one.status == 200)
            #expect(one.json["time"] as? String == "2026-04-15T00:00:00.000Z")
            #expect((one.json["amount"] as? [String: String]) == ["amount": "12.34", "currency": "EUR"])

            let bad = try await client.call(.get, "/v1/users/u1/transactions?cursor=zz", role: .read)
            #expect(bad.status == 400)
            #expect(bad.field == "cursor")
            let badLimit = try await client.call(.get, "/v1/users/u1/transactions?limit=0", role: .read)
            #expect(badLimit.status == 400)
            #expect(badLimit.field == "limit")
            // A parameter given twice has no one meaning.
            for (uri, field) in [
                ("/v1/users/u1/transactions?limit=1&limit=1000", "limit"),
                ("/v1/users/u1/footprints?from=2026-01-01T00:00:00Z&from=2026-02-01T00:00:00Z", "from"),
                ("/v1/users?cursor=a&cursor=b", "cursor"),
            ] {
                let twice = try await client.call(.get, uri, role: .admin)
                #expect(twice.status == 400, "\(uri): \(twice.text)")
                #expect(twice.field == field)
                #expect((twice.error["message"] as? String)?.contains("is given 2 times") == true)
            }
            let backwards = try await client.call(
                .get, "/v1/users/u1/transactions?from=2026-05-01T00:00:00Z&to=2026-01-01T00:00:00Z",
                role: .read)
            #expect(backwards.status == 400)
        }
    }

    @Test func oneTransactionIsDeletedThenGone() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            _ = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1"), transactionJSON("t2")))
            let del = try await client.call(.delete, "/v1/users/u1/transactions/t1", role: .write)
            #expect(del.status == 200)
            #expect(del.json["deleted"] as? String == "t1")
            #expect(del.json["revision"] as? Int == 2)
            #expect(
                try await client.call(.delete, "/v1/users/u1/transactions/t1", role: .write).status == 404)
            #expect(try await client.call(.get, "/v1/users/u1/transactions/t1", role: .read).status == 404)
            #expect(try await service.store.get("u1").transactions.map(\.id) == ["t2"])
        }
    }

    @Test func wholeRecordUsersListAndErase() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            for i in 0..<5 {
                _ = try await client.call(
                    .post, "/v1/users/user-\(i)/transactions", role: .write, body: batch(transactionJSON("t"))
                )
            }
            let whole = try await client.call(.get, "/v1/users/user-1", role: .read)
            #expect(whole.status == 200)
            let record = try RecordJSON.decode(UserRecord.self, from: whole.text)
            #expect(record == (try await service.store.get("user-1")))

            var users: [String] = []
            var cursor: String?
            repeat {
                let a = try await client.call(
                    .get, "/v1/users?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(a.status == 200)
                users += a.json["users"] as? [String] ?? []
                cursor = a.json["nextCursor"] as? String
            } while cursor != nil && users.count < 20
            #expect(users.sorted() == (0..<5).map { "user-\($0)" })
            #expect(try await client.call(.get, "/v1/users", role: .write).status == 403)

            #expect(try await client.call(.delete, "/v1/users/user-1", role: .write).status == 403)
            let erase = try await client.call(.delete, "/v1/users/user-1")
            #expect(erase.status == 200)
            #expect(erase.json["deleted"] as? Bool == true)
            #expect(try await service.store.read("user-1") == nil)
            #expect(try await client.call(.delete, "/v1/users/user-1").status == 404)
            #expect(try await client.call(.get, "/v1/users/user-1", role: .read).status == 404)
        }
    }

    /// A record that holds more text than the service answers whole (strings stored once and used
    /// by many rows: 150 transactions naming one merchant of 1 MiB) is refused with
    /// `answer_too_large` before any of its text is written, instead of building gigabytes; its
    /// pages and the other users are still answered.
    @Test func aRecordTooLargeToAnswerWholeIsRefusedAndPaged() async throws {
        let service = try await TestService.memory()
        let merchant = String(repeating: "m", count: 1 << 20)
        try await service.store.update("big") { record in
            for i in 0..<150 {
                var t = Transaction(
                    id: "t\(i)", time: Timestamp(millisecondsSince1970: 1_700_000_000_000 + Int64(i)),
                    amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
                t.merchant = merchant
                try record.upsert(t)
            }
        }
        try await service.application().test(.router) { client in
            _ = try await client.call(
                .post, "/v1/users/small/transactions", role: .write, body: batch(transactionJSON("t")))
            let whole = try await client.call(.get, "/v1/users/big", role: .read)
            #expect(whole.status == 500 && whole.code == "answer_too_large", "\(whole.text.prefix(300))")
            #expect(whole.error["limit"] as? Int == RecordJSON.maximumTextBytes)
            #expect((whole.error["message"] as? String)?.contains("a part at a time") == true)
            let page = try await client.call(.get, "/v1/users/big/transactions?limit=10", role: .read)
            #expect(page.status == 200 && (page.json["transactions"] as? [Any])?.count == 10)
            #expect(try await client.call(.get, "/v1/users/small", role: .read).status == 200)
        }
    }

    @Test func responsesArePutAndListed() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            var a = try await client.call(
                .put, "/v1/users/u1/responses/diet", role: .write, body: #"{"answer":"vegan"}"#)
            #expect(a.status == 200)
            #expect(a.json["status"] as? String == "added")
            a = try await client.call(
                .put, "/v1/users/u1/responses/diet", role: .write, body: #"{"answer":"vegan"}"#)
            #expect(a.json["status"] as? String == "unchanged")
            #expect(a.json["revision"] as? Int == 1)
            a = try await client.call(
                .put, "/v1/users/u1/responses/diet", role: .write,
                body: #"{"answer":["bus","bike"],"answeredAt":"2026-02-01T00:00:00Z"}"#)
            #expect(a.json["status"] as? String == "replaced")
            a = try await client.call(
                .put, "/v1/users/u1/responses/km", role: .write, body: #"{"answer":{"number":"-Infinity"}}"#)
            #expect(a.status == 200)
            let list = try await client.call(.get, "/v1/users/u1/responses", role: .read)
            let responses = list.json["responses"] as? [[String: Any]] ?? []
            #expect(responses.compactMap { $0["questionId"] as? String } == ["diet", "km"])
            #expect(
                try await service.store.get("u1").response(questionID: "km")?.answer == .number(-.infinity))
            let bad = try await client.call(
                .put, "/v1/users/u1/responses/x", role: .write, body: #"{"answer":{"number":"many"}}"#)
            #expect(bad.status == 400)
            #expect(bad.field == "answer")
            let missing = try await client.call(.put, "/v1/users/u1/responses/x", role: .write, body: #"{}"#)
            #expect(missing.field == "answer")
        }
    }

    @Test func preferencesAreMergePatched() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            var a = try await client.call(
                .patch, "/v1/users/u1/preferences", role: .write,
                body: #"{"theme":"dark","units":"metric","caf\u00e9":"nfc","cafe\u0301":"nfd"}"#,
                headers: [.contentType: "application/merge-patch+json"])
            #expect(a.status == 200)
            #expect(a.headers[.init("X-Revision")!] == "1")
            a = try await client.call(
                .patch, "/v1/users/u1/preferences", role: .write, body: #"{"units":null,"theme":"light"}"#)
            #expect(a.status == 200)
            let prefs = try await service.store.get("u1").preferences
            #expect(prefs["theme"]?.value == "light")
            #expect(prefs["units"] == nil)
            #expect(prefs["caf\u{e9}"]?.value == "nfc")
            #expect(prefs["cafe\u{301}"]?.value == "nfd")
            let got = try await client.call(.get, "/v1/users/u1/preferences", role: .read)
            #expect(got.status == 200)
            #expect(got.text.contains(#""caf\#u{e9}":"nfc""#) && got.text.contains(#""cafe\#u{301}":"nfd""#))
            let bad = try await client.call(
                .patch, "/v1/users/u1/preferences", role: .write, body: #"{"theme":{"a":1}}"#)
            #expect(bad.status == 400)
            #expect(bad.field == "theme")
            #expect(
                try await client.call(.patch, "/v1/users/u1/preferences", role: .write, body: #"[1]"#).status
                    == 400)
        }
    }

    /// `"type": "integer"` in OpenAPI 3.1 (JSON Schema 2020-12) is any number whose fraction is zero.
    @Test func anIntegerMayBeWrittenWithAZeroFraction() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            for (id, mcc) in [
                ("t1", "5411.0"), ("t2", "5.411e3"), ("t3", "5411"), ("t4", "541100E-2"), ("t5", "0.5411e+4"),
                ("t6", "5411" + "." + String(repeating: "0", count: 100)), ("t7", "5411e0"), ("t8", "0e1001"),
            ] {
                let a = try await client.call(
                    .post, "/v1/users/u1/transactions", role: .write,
                    body: batch(transactionJSON(id, extra: ",\"mcc\":\(mcc)")))
                #expect(a.status == 200, "\(mcc): \(a.text)")
            }
        }
        let record = try await service.store.get("u1")
        #expect(record.transactions.map(\.mcc) == [5411, 5411, 5411, 5411, 5411, 5411, 5411, 0])
    }

    @Test func footprintsSavingsAndSummary() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            _ = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write,
                body: batch(transactionJSON("t1", time: "2026-02-10T00:00:00Z")))
            let footprints = #"""
                {"footprints":[
                 {"id":"f1","transactionId":"t1","kgCO2e":2.5,"category":"food","methodology":"m1","calculatedAt":"2026-03-05T00:00:00Z"},
                 {"id":"f2","period":{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z"},"kgCO2e":"40","category":"travel","methodology":"m1","calculatedAt":"2026-02-02T00:00:00Z"},
                 {"id":"f3","kgCO2e":1,"category":"food","methodology":"m1","calculatedAt":"2026-05-01T00:00:00Z"}]}
                """#
            var a = try await client.call(.post, "/v1/users/u1/footprints", role: .write, body: footprints)
            #expect(a.status == 200)
            #expect(
                (a.json["results"] as? [[String: Any]])?.map { $0["status"] as? String } == [
                    "added", "added", "added",
                ])
            a = try await client.call(
                .post, "/v1/users/u1/footprints", role: .write,
                body:
                    #"{"footprints":[{"id":"f3","kgCO2e":1.5,"category":"food","methodology":"m2","calculatedAt":"2026-05-01T00:00:00Z"}]}"#
            )
            #expect((a.json["results"] as? [[String: Any]])?.first?["status"] as? String == "replaced")
            a = try await client.call(
                .post, "/v1/users/u1/savings", role: .write,
                body:
                    #"{"savings":[{"id":"s1","actionId":"bike","kgCO2e":3,"moneySaved":{"amount":"4.50","currency":"EUR"},"period":{"start":"2026-02-01T00:00:00Z","end":"2026-03-01T00:00:00Z"},"recordedAt":"2026-03-01T00:00:00Z"}]}"#
            )
            #expect(a.status == 200)

            let listed = try await client.call(
                .get, "/v1/users/u1/footprints?from=2026-02-01T00:00:00Z", role: .read)
            #expect(
                (listed.json["footprints"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [
                    "f1", "f3",
                ])
            let savings = try await client.call(
                .get, "/v1/users/u1/savings?to=2026-02-01T00:00:00Z", role: .read)
            #expect((savings.json["savings"] as? [Any])?.count == 0)
            // Listed by time (then id), not in the order they were added.
            let all = try await client.call(.get, "/v1/users/u1/footprints", role: .read)
            #expect(
                (all.json["footprints"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [
                    "f2", "f1", "f3",
                ])
            // Equal times: by id, in UTF-8 byte order.
            let same = #"""
                {"footprints":[
                 {"id":"f9","kgCO2e":0,"category":"food","methodology":"m1","calculatedAt":"2026-05-01T00:00:00Z"},
                 {"id":"f0","kgCO2e":0,"category":"food","methodology":"m1","calculatedAt":"2026-05-01T00:00:00Z"}]}
                """#
            #expect(
                try await client.call(.post, "/v1/users/u1/footprints", role: .write, body: same).status
                    == 200)
            let ties = try await client.call(.get, "/v1/users/u1/footprints", role: .read)
            #expect(
                (ties.json["footprints"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [
                    "f2", "f1", "f0", "f3", "f9",
                ])
            let more = #"""
                {"savings":[
                 {"id":"s9","actionId":"bus","kgCO2e":1,"period":{"start":"2026-04-01T00:00:00Z","end":"2026-05-01T00:00:00Z"},"recordedAt":"2026-05-01T00:00:00Z"},
                 {"id":"s0","actionId":"bus","kgCO2e":1,"period":{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z"},"recordedAt":"2026-02-01T00:00:00Z"},
                 {"id":"s2","actionId":"bus","kgCO2e":1,"period":{"start":"2026-02-01T00:00:00Z","end":"2026-03-01T00:00:00Z"},"recordedAt":"2026-03-01T00:00:00Z"}]}
                """#
            #expect(
                try await client.call(.post, "/v1/users/u1/savings", role: .write, body: more).status == 200)
            let byStart = try await client.call(.get, "/v1/users/u1/savings", role: .read)
            #expect(
                (byStart.json["savings"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [
                    "s0", "s1", "s2", "s9",
                ])

            let summary = try await client.call(.get, "/v1/users/u1/summary", role: .read)
            #expect(summary.status == 200)
            #expect(summary.json["kgCO2e"] as? Double == 44)
            #expect(summary.json["savedKgCO2e"] as? Double == 6)
            let months = (summary.json["byMonth"] as? [[String: Any]] ?? []).map {
                "\($0["month"]!)=\($0["kgCO2e"]!)"
            }
            #expect(months == ["2026-01=40", "2026-02=2.5", "2026-05=1.5"])
            let categories = (summary.json["byCategory"] as? [[String: Any]] ?? []).map {
                "\($0["category"]!)=\($0["kgCO2e"]!)"
            }
            #expect(categories == ["food=4", "travel=40"])
            #expect(summary.json["from"] is NSNull)
            let ranged = try await client.call(
                .get, "/v1/users/u1/summary?from=2026-02-01T00:00:00Z&to=2026-03-01T00:00:00Z", role: .read)
            #expect(ranged.json["kgCO2e"] as? Double == 2.5)
            #expect(ranged.json["from"] as? String == "2026-02-01T00:00:00.000Z")
        }
    }

    @Test func serviceRoutesNeedNoKey() async throws {
        let service = try await TestService.memory()
        try await service.application().test(.router) { client in
            #expect(try await client.call(.get, "/healthz", role: nil).json["status"] as? String == "ok")
            #expect(try await client.call(.get, "/readyz", role: nil).json["status"] as? String == "ready")
            let doc = try await client.call(.get, "/openapi.json", role: nil)
            #expect(doc.status == 200)
            #expect((doc.json["openapi"] as? String)?.hasPrefix("3.1") == true)
            _ = try await client.call(
                .post, "/v1/users/u1/transactions", role: .write, body: batch(transactionJSON("t1")))
            let metrics = try await client.call(.get, "/metrics", role: nil)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            #expect(
                metrics.text.contains(
                    #"carbonstore_http_requests_total{method="POST",route="/v1/users/{userId}/transactions",status="200"} 1"#
                ))
            #expect(metrics.text.contains("carbonstore_lock_wait_seconds_count 1"))
            #expect(metrics.text.contains("carbonstore_bytes_written_total "))
            #expect(!metrics.text.contains("carbonstore_bytes_written_total 0"))
        }
    }
}
