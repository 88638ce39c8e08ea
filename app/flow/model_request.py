"""`POST /report` and `POST /vqa`, top to bottom: upload -> options -> admission -> prepare ->
generate -> respond (JSON, or Server-Sent Events with `stream=true`).

The request is admitted only once its body is complete and its options are valid: a slow
upload holds no slot (it is bounded by the upload deadline and minimum rate instead). Before
the body is read, a request the service would refuse anyway (model not ready, over capacity)
is told so without taking a slot. The upload is deleted once the CT is prepared.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fastapi import Request
from pydantic import BaseModel

from app.flow import sse
from app.flow.generate import StreamedGeneration, generate
from app.flow.options import Options
from app.flow.prepare import prepare
from app.flow.respond import model_response
from app.flow.tasks import read_options
from app.flow.upload import receive
from app.service import InferenceService, ReportTask, VqaTask
from app.settings import Settings

TaskMaker = Callable[[Options, Settings], ReportTask | VqaTask]


async def model_request(request: Request, key: str, make_task: TaskMaker, response_model: type[BaseModel]):
    service: InferenceService = request.app.state.service
    settings: Settings = request.app.state.settings
    service.require_ready()  # before reading a large body the model could not use
    service.admission.check(key)  # likewise when it would be refused anyway (takes no slot)

    with await receive(request, key) as upload:  # upload
        options = Options(upload)  # options
        task = make_task(options, settings)
        reading = read_options(options, settings)
        ticket = service.admit(key)  # admission
        prepared = await prepare(request, upload, reading, ticket)  # prepare (frees the ticket if it fails)

    try:  # respond: as JSON or as events
        stream = options.flag("stream")
    except BaseException:
        ticket.release()
        raise
    finish = partial(model_response, response_model=response_model, request_id=request.state.request_id,
                     options=options)
    if stream:  # generate, each piece of text an event as it comes
        return sse.stream_response(StreamedGeneration(service, prepared, task, ticket), finish,
                                   request.state.request_id)
    return finish(await generate(request, prepared, task, ticket))  # generate, then the JSON
