"""The path of a request, one module per step, in the order a request takes them.

    upload    app/flow/upload.py     receive the multipart body, counted against uploads in progress
    options   app/flow/options.py    read the fields strictly (app/flow/fields.py declares them)
              app/flow/tasks.py      ... into what to do: ReadOptions + ReportTask / VqaTask
    admission app/admission.py       a slot, once the body is complete and the options valid
    prepare   app/flow/prepare.py    decode the CT in a worker process, prepare it for the model
    generate  app/flow/generate.py   the model work, micro-batched by app/service.py
    respond   app/flow/respond.py    the JSON response, or app/flow/sse.py with `stream=true`

Each endpoint's flow calls them top to bottom: app/flow/model_request.py (/report, /vqa),
app/flow/inspect_request.py (/inspect, no model), app/flow/job_request.py (/jobs: the same
steps in the background). The routes (app/routes/) only declare the endpoints and call a flow.
Data flows one way: a step never calls back into the route or into an earlier step.
"""
