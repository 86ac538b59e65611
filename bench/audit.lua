-- wrk script for the benchmark's audit case: POST /audit with a 1 MB JSON body (1,000,000
-- bytes), echoed back, on a route whose policy keeps whole bodies. The body ends with the
-- marker AUDIT-END, which the sink counts in what it receives: two per whole log.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local row = '{"id":12345,"name":"Ada Lovelace","email":"ada@example.test","note":"audit trail row"},'
local head, tail = '{"rows":[', '{}],"end":"AUDIT-END"}'
local rows = string.rep(row, math.floor((1000000 - #head - #tail) / #row))
local pad = string.rep(" ", 1000000 - #head - #rows - #tail)
wrk.body = head .. rows .. pad .. tail
