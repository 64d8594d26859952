"""The OpenAPI 3.1 document of the HTTP API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi(version: str) -> dict[str, Any]:
    request_body = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/GenerateRequest"}}}}
    common_errors = {
        "400": _error("Bad input: not JSON, unknown field, bad value, language the model does not know."),
        "401": _error("Missing or wrong token (servers started with --token)."),
        "408": _error("The body did not arrive in time."),
        "409": _error("The request names a model or precision other than the one served."),
        "413": _error("Body or intent too large."),
        "503": {**_error("The queue is full; retry after the Retry-After header's seconds."),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
        "504": _error("Generation took longer than the server's timeout."),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "nl2code", "version": version,
                 "description": "Offline natural language to code. Answers are the same JSON as `nl2code --json`."},
        "paths": {
            "/v1/generate": {"post": {
                "summary": "Code for an intent: up to n candidates that parse, best first.",
                "requestBody": request_body,
                "responses": {"200": {
                    "description": "The --json record. `error` is set and `candidates` empty when no "
                                   "candidate parsed. X-Nl2code-Record names the history record.",
                    "headers": {"X-Nl2code-Record": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}},
                    **common_errors}}},
            "/v1/explain": {"post": {
                "summary": "What code does, in words (the model's reverse part): the JSON of `nl2code explain --json`.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["code"], "additionalProperties": False,
                    "properties": {"code": {"type": "string"},
                                   "lang": {"type": "string", "default": "python", "enum": ["python", "bash"]},
                                   "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                                   "model": {"type": "string"}, "precision": {"type": "string"}}}}}},
                "responses": {"200": {"description": "Up to n explanations, best first.",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "properties": {
                                              "code": {"type": "string"}, "lang": {"type": "string"},
                                              "model": {"type": "string"},
                                              "explanations": {"type": "array", "items": {"type": "string"}},
                                              "error": {"type": ["string", "null"]}}}}}},
                              "501": _error("The model has no reverse part to explain code with."), **common_errors}}},
            "/v1/accept": {"post": {
                "summary": "Record that a candidate (or edited code) was accepted; `train --from-history` learns from it.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["id"], "additionalProperties": False,
                    "properties": {"id": {"type": "integer"}, "index": {"type": "integer", "minimum": 0},
                                   "code": {"type": "string"}}}}}},
                "responses": {"200": {"description": "Recorded."}, "404": _error("No such record."),
                              **common_errors}}},
            "/v1/health": {"get": {"summary": "Liveness and the model served.",
                                   "responses": {"200": {"description": "Server status.",
                                                         "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format 0.0.4).",
                                 "responses": {"200": {"description": "Metrics.",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI."}}}},
        },
        "components": {
            "schemas": {
                "GenerateRequest": {"type": "object", "required": ["intent"], "additionalProperties": False,
                                    "properties": {
                                        "intent": {"type": "string", "maxLength": 10000},
                                        "lang": {"type": "string", "default": "python", "enum": ["python", "bash"]},
                                        "n": {"type": "integer", "minimum": 1, "maximum": 20, "default": 1},
                                        "beam": {"type": "integer", "minimum": 1, "maximum": 32, "default": 5},
                                        "model": {"type": "string", "description": "Must name the model served."},
                                        "precision": {"type": "string", "enum": ["int8", "float32", "auto"]},
                                        "log": {"type": "boolean", "default": True},
                                        "source": {"type": "string", "default": "server"}}},
                "Candidate": {"type": "object", "properties": {
                    "code": {"type": "string"}, "score": {"type": "number"}, "logprob": {"type": "number"},
                    "parses": {"type": "boolean"}, "danger": {"type": "array", "items": {"type": "string"}},
                    "low_confidence": {"type": ["boolean", "null"]}}},
                "Answer": {"type": "object", "required": ["intent", "lang", "model", "candidates", "error"],
                           "properties": {"intent": {"type": "string"}, "lang": {"type": "string"},
                                          "model": {"type": ["string", "null"]},
                                          "candidates": {"type": "array",
                                                         "items": {"$ref": "#/components/schemas/Candidate"}},
                                          "error": {"type": ["string", "null"]}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
