"""The environment variables the client reads: where the Flow is and the user's token (each overrides the saved
login of ``finetuner login``)."""

HOST_VARIABLE = "FINETUNER_HOST"
TOKEN_VARIABLE = "FINETUNER_TOKEN"
