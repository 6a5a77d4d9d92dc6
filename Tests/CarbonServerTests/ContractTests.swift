import CarbonFormat
import CarbonModel
import CarbonServer
import CarbonStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// A store whose storage fails on purpose for some users, so that every documented status can be
/// provoked: "broken" fails every call with an I/O error, "misconfigured" as a missing bucket does,
/// "contended" always loses the fence, and listing fails when `failList` is set.
final class TroubledStorage: ObjectStorage {
    let inner = MemoryStorage()
    let keys = UserKeys()
    let failList: Bool

    init(failList: Bool = false) { self.failList = failList }

    func isUser(_ key: String, _ id: String) -> Bool { (try? keys.key(for: id)) == key }

    func get(_ key: String) async throws -> StoredObject? {
        if isUser(key, "broken") { throw StorageIOError(operation: "read", path: key, errno: EIO) }
        if isUser(key, "misconfigured") {
            // As a missing bucket is reported by the S3 backend: an error of kind invalidInput
            // that is the operator's to fix, not the client's.
            throw InvalidStorageURIError(
                uri: "s3:secret-bucket", problem: "the bucket does not exist", example: "s3:other-bucket")
        }
        return try await inner.get(key)
    }

    func getBytes(_ key: String) async throws -> [UInt8]? { try await get(key)?.bytes }

    func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        if isUser(key, "contended") { throw VersionMismatchError(location: key, expected: "v0") }
        return try await inner.put(key, bytes: bytes, condition: condition)
    }

    func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        if isUser(key, "contended") { throw VersionMismatchError(location: key, expected: "v0") }
        return try await inner.delete(key, condition: condition)
    }

    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        if failList { throw StorageIOError(operation: "list", path: prefix, errno: EIO) }
        return try await inner.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }

    func location(of key: String) -> String { "troubled://\(key)" }
}

/// The routes and statuses of the service against its OpenAPI document, both ways: every route in
/// the document is served and every served route is in the document; every status the document
/// lists for a route is answered by a request of the tour below, and every status the tour saw is
/// in the document.
@Suite struct ContractTests {
    static func document() throws -> [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../Sources/CarbonServer/openapi.json")
        return try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    static func documented() throws -> [String: Set<Int>] {
        var result: [String: Set<Int>] = [:]
        let paths = try #require(try document()["paths"] as? [String: [String: Any]])
        for (path, operations) in paths {
            for (method, operation) in operations
            where ["get", "put", "post", "patch", "delete"].contains(method) {
                let responses = (operation as? [String: Any])?["responses"] as? [String: Any] ?? [:]
                result["\(method.uppercased()) \(path)"] = Set(responses.keys.compactMap { Int($0) })
            }
        }
        return result
    }

    @Test func theRoutesAreExactlyTheDocumentedOnes() throws {
        let served = Set(CarbonAPI.routes.map { "\($0.method.rawValue) \($0.path)" })
        #expect(served == Set(try Self.documented().keys))
        // The router serves the table: each route answers something other than 404-for-no-route.
        #expect(CarbonAPI.routes.count == served.count)
    }

    /// A request of the tour: which route it exercises, and what it sends.
    struct Step {
        var route: String
        var method: HTTPRequest.Method
        var uri: String
        var role: Role? = .admin
        var body: String?
        var contentType = "application/json"
        var drained = false
    }

    static func steps(for route: APIRoute, status: Int) -> [Step] {
        let key = "\(route.method.rawValue) \(route.path)"
        func uri(user: String, extra: String = "") -> String {
            route.path.replacingOccurrences(of: "{userId}", with: user)
                .replacingOccurrences(of: "{transactionId}", with: "t1")
                .replacingOccurrences(of: "{questionId}", with: "q1") + extra
        }
        let isWrite = route.role == .write || (route.role == .admin && route.method == .delete)
        let body: String? =
            switch (route.method, route.path) {
            case (.post, let p) where p.hasSuffix("transactions"): batch(transactionJSON("t9"))
            case (.post, let p) where p.hasSuffix("footprints"):
                #"{"footprints":[{"id":"f","kgCO2e":1,"category":"c","methodology":"m","calculatedAt":"2026-01-01T00:00:00Z"}]}"#
            case (.post, let p) where p.hasSuffix("savings"):
                #"{"savings":[{"id":"s","actionId":"a","kgCO2e":1,"period":{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z"},"recordedAt":"2026-01-01T00:00:00Z"}]}"#
            case (.put, _): #"{"answer":"yes"}"#
            case (.patch, _): #"{"theme":"dark"}"#
            default: nil
            }
        var step = Step(route: key, method: route.method, uri: uri(user: "u1"), role: route.role, body: body)
        switch status {
        case 200:
            return [step]
        case 400:
            step.uri = route.path == "/v1/users" ? "/v1/users?limit=0" : uri(user: "%FF")
        case 401:
            step.role = nil
        case 403:
            guard let role = route.role, role != .read else { return [] }
            step.role = role == .admin ? .write : .read
        case 404:
            step.uri = uri(user: "nobody")
        case 409:
            guard isWrite else { return [] }
            step.uri = uri(user: "contended")
        case 413:
            guard let b = body else { return [] }
            step.body = String(b.dropLast()) + #","x":"\#(String(repeating: "x", count: 5000))"}"#
        case 415:
            step.contentType = "text/plain"
        case 500:
            step.uri = route.path == "/v1/users" ? "/v1/users" : uri(user: "broken")
        case 503:
            step.drained = true
        default:
            return []
        }
        return [step]
    }

    @Test func everyDocumentedStatusIsAnsweredAndNoOther() async throws {
        let documented = try Self.documented()
        func makeService(failList: Bool) -> TestService {
            var options = StoreOptions()
            options.maxConflictRetries = 1
            let store = Store(
                storage: TroubledStorage(failList: failList), locks: InProcessLockService(), options: options)
            return TestService(store: store) { $0.maxBodyBytes = 4096 }
        }
        let service = makeService(failList: false)
        let failing = makeService(failList: true)
        let drained = makeService(failList: false)
        await drained.drain.drain()
        // u1 and contended have a transaction t1: every 200 of the tour finds something, and every
        // write to contended gets as far as the fence. contended is written under the storage.
        let t1 = Transaction(
            id: "t1", time: .init(millisecondsSince1970: 0),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
        _ = try await service.store.update("u1") { r in try r.upsert(t1) }
        var contended = UserRecord(
            userID: "contended", revision: 1, createdAt: .init(millisecondsSince1970: 0))
        try contended.upsert(t1)
        let storage = try #require(service.store.storage as? TroubledStorage)
        try await storage.inner.put(
            try service.store.keys.key(for: "contended"), bytes: try RecordCodec().encode(contended),
            condition: .unconditional)
        var seen: [String: Set<Int>] = [:]
        for route in CarbonAPI.routes {
            let key = "\(route.method.rawValue) \(route.path)"
            for status in documented[key] ?? [] {
                for step in Self.steps(for: route, status: status) {
                    // Each step starts from u1 with t1 (an earlier step may have deleted them).
                    _ = try await service.store.update("u1") { r in try r.upsert(t1) }
                    let target =
                        step.drained
                        ? drained : (status == 500 && route.path == "/v1/users" ? failing : service)
                    let answer = try await target.application().test(.router) { client in
                        try await client.call(
                            step.method, step.uri, role: step.role, body: step.body,
                            headers: step.body == nil ? [:] : [.contentType: step.contentType])
                    }
                    #expect(answer.status == status, "\(key) for \(status): \(answer.text)")
                    seen[key, default: []].insert(answer.status)
                    #expect(answer.headers[.init("X-Request-Id")!] != nil)
                }
            }
        }
        for (key, statuses) in documented {
            #expect(
                seen[key] == statuses,
                "\(key): documented \(statuses.sorted()), answered \(seen[key]?.sorted() ?? [])")
        }
    }
}
