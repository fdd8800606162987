-- Looking a request up by its X-Request-Id (GET /v1/requests/{id}), within its account.
CREATE INDEX requests_by_request_id ON requests (account, request_id);
